"""xulab: a simulated Xtract Universal fleet on loopback, reached over real WS-Management.

See tests/lab/README.md. `xulab.client.Lab` drives a running lab from Python.
"""

from __future__ import annotations
