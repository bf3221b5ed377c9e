"""Central ACME issuance end to end: a 5-host lab fleet renewed from pebble, DNS-01 through BIND, then nothing to do.

The renew playbook with xu_renew_mode acme: the engine orders each due host's certificate in the controller's process
(its order step) and installs it; see docs/acme.md.
"""

from __future__ import annotations

import base64
import datetime
import json
import pathlib
import re
import shutil
import tempfile
from typing import Any

import pytest
from acmerun import acme_report, pebble_orders, presented, snapshot, start
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from labtools import Lab

pytestmark = pytest.mark.lab


def pfx_blobs(content: bytes) -> list[bytes]:
    """Every PKCS#12 file in base64 in ``content``: a DER SEQUENCE whose first element is the INTEGER 3 (RFC 7292's
    version), which tells it apart from a certificate (a SEQUENCE of a SEQUENCE) and from any other base64."""
    found = []
    for match in re.finditer(rb"MI[A-Za-z0-9+/]{200,}={0,2}", content):
        blob = match.group(0)
        try:
            der = base64.b64decode(blob[: len(blob) // 4 * 4])
        except ValueError:
            continue
        header = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)
        if der[:1] == b"\x30" and der[header : header + 3] == b"\x02\x01\x03":
            found.append(blob)
    return found


# The DER openings of an unencrypted RSA private key: PKCS#8 (version 0, then the rsaEncryption algorithm) and PKCS#1 (version
# 0, then a 2048, 3072 or 4096-bit modulus).
_PRIVATE_KEY_DER = (
    bytes.fromhex("020100300d06092a864886f70d0101010500"),
    bytes.fromhex("0201000282010100"),
    bytes.fromhex("0201000282018100"),
    bytes.fromhex("0201000282020100"),
)


def private_key_in(content: bytes) -> bool:
    return b"PRIVATE KEY" in content or any(opening in content for opening in _PRIVATE_KEY_DER)


def _places(run_output: str, results: list[dict[str, Any]], lab: Lab) -> dict[str, bytes]:
    places = {"ansible-playbook output": run_output.encode(), "task results": json.dumps(results).encode(), "lab.log": (lab.dir / "lab.log").read_bytes()}
    for path in (lab.dir / "hosts").rglob("*"):
        if path.is_file():
            places[str(path.relative_to(lab.dir))] = path.read_bytes()
    return places


def test_fleet_renewed_from_pebble_then_nothing_to_do(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "healthy", "--expiring-in", "5", "--restart-delay", "0.2")
    acme = start(lab, tmp_path)
    # The controller's temporary files (Python's and Ansible's) in a folder of the test's own, to be searched afterwards;
    # a short path, as ansible-core's local RPC server puts a Unix socket in it (108 bytes at most).
    controller_tmp = pathlib.Path(tempfile.mkdtemp(prefix="xu-ctl-"))
    try:
        dry = acme.run(tmp_path, check=True)
        assert dry.rc == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
        for host in lab.hosts:
            checked = acme_report(dry, host)["dry_run"]
            assert checked["names"] == [f"{host}.xulab.test"] and checked["account_exists"] is False
        assert pebble_orders(acme.services) == 0
        assert acme.services.zone_txt_names() == []
        before = {host: snapshot(lab, host) for host in lab.hosts}

        first = acme.run(tmp_path, verbosity=5, env={"TMPDIR": str(controller_tmp), "ANSIBLE_LOCAL_TEMP": str(controller_tmp / "ansible")})
        assert first.rc == 0, first.stdout[-4000:] + first.stderr[-4000:]
        timings = {}
        for info in lab.info["hosts"]:
            host, fqdn = info["name"], info["fqdn"]
            report = acme_report(first, host)
            assert report["issued"] is True, report
            # The strategy left empty: an ordered certificate goes in with one restart.
            assert report["summary"]["strategy"] == "minimal_outage", report["summary"]
            certificate = presented(info["address"], fqdn, acme.root)  # chains to pebble's root, names the host
            names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
            assert fqdn in names
            assert certificate.serial_number == int(report["acme"]["serial_number"], 16)
            assert before[host].state["service"]["listeners"] != lab.state(host)["service"]["listeners"]
            timings[host] = report["acme"]["seconds"]
        assert len({acme_report(first, host)["acme"]["order"] for host in lab.hosts}) == 5
        orders_after_first = pebble_orders(acme.services)
        assert acme.services.zone_txt_names() == []
        print("\nACME seconds per host (order to certificate):", json.dumps(timings, indent=1))

        secrets = {
            "account key": acme.account_key.split("-----")[2].strip().splitlines()[0],
            "EAB MAC key": acme.services.eab_hmac_key,
            "TSIG secret": acme.services.tsig_secret,
        }
        for place, content in _places(first.stdout + first.stderr, first.results, lab).items():
            for name, secret in secrets.items():
                assert secret.encode() not in content, f"the {name} is in {place}"
            assert b"PRIVATE KEY" not in content, place
            assert not pfx_blobs(content), place
        # The hosts' new keys never touch the controller's disk: no file the run could write holds a private key, PEM or DER.
        assert (controller_tmp / "ansible").is_dir(), "the run did not use the controller temporary folder it was given"
        for folder in (tmp_path, controller_tmp):
            for path in folder.rglob("*"):
                if path.is_file() and "services" not in path.relative_to(folder).parts:
                    assert not private_key_in(path.read_bytes()), path

        after_first = {host: snapshot(lab, host) for host in lab.hosts}
        second = acme.run(tmp_path)
        assert second.rc == 0, second.stdout[-3000:] + second.stderr[-3000:]
        for host in lab.hosts:
            report = acme_report(second, host)
            # pebble has no renewal information: the CA gives no verdict and the engine's own rule finds the host not due.
            assert report["issued"] is False and report["assessment"]["due"] is None, report
            assert report["summary"]["result"] == "not_due", report
            state = lab.state(host)
            assert state["service"] == after_first[host].state["service"] and state["certificates"] == after_first[host].state["certificates"]
        assert pebble_orders(acme.services) == orders_after_first
    finally:
        acme.services.stop()
        shutil.rmtree(controller_tmp, ignore_errors=True)
    assert not (tmp_path / "services").exists()


def test_pfx_is_what_windows_server_2016_imports(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    """A 2016 host refuses a PFX encrypted with AES (as PFXImportCertStore does there); the issued one is taken."""
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", "--expiring-in", "5", "--windows-version", "2016", "--restart-delay", "0.1")
    acme = start(lab, tmp_path, eab_required=False)
    try:
        run = acme.run(tmp_path, xu_renew_acme_eab_kid="", xu_renew_acme_eab_hmac_key="", xu_renew_acme_key_type="rsa3072")
        assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
        certificate = presented(lab.info["hosts"][0]["address"], lab.info["hosts"][0]["fqdn"], acme.root)
        assert certificate.public_key().key_size == 3072  # type: ignore[union-attr]
    finally:
        acme.services.stop()


def test_pfx_detector_finds_a_pfx_and_not_a_certificate() -> None:
    """The detector the secrets check relies on: it must fail on the file it looks for."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "detector")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1).not_valid_before(
        now).not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    pfx = pkcs12.serialize_key_and_certificates(b"x", key, cert, None, serialization.BestAvailableEncryption(b"pw"))
    text = b"before " + base64.b64encode(pfx) + b" " + base64.b64encode(cert.public_bytes(serialization.Encoding.DER)) + b" after"
    assert pfx_blobs(text) == [base64.b64encode(pfx)]
