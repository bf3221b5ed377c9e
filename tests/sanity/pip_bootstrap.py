"""Offline stand-in for pip's bootstrap script: ensurepip, then pip install <args>."""
import ensurepip
import os
import ssl
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
# The bundled pip predates truststore; point it at the system's CA bundle.
env = dict(os.environ, PIP_CERT=ssl.get_default_verify_paths().cafile or "")
# get-pip.py understands these two; pip does not, and an empty venv has neither anyway.
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args], env=env))
