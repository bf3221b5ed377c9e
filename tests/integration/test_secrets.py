"""Secrets never leave the controller's memory: every module at -vvvvv, with a PFX password and WinRM credentials."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from labtools import Lab
from test_xu_cert_swap import issue, new_password

BACKUP_GLOB = "tls.json.*.bak"


def test_no_secret_in_output_results_transcript_or_files(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", "--restart-delay", "0.1")
    pfx_password = new_password()
    minted = issue(lab, tmp_path, "new.pfx", pfx_password)
    old = json.loads(lab.xulab("state", "--dir", str(lab.dir), "--host", "xu01"))["service"]["listeners"][0]["thumbprint"]
    tasks = [
        {"name": "info", "xtractuniversal.tls.xu_tls_info": {}},
        {"name": "journal", "xtractuniversal.tls.xu_journal": {"content": {"step": "started"}}},
        {"name": "gate", "xtractuniversal.tls.xu_firewall_gate": {"state": "closed", "auto_open_after": 5}},
        {"name": "swap", "xtractuniversal.tls.xu_cert_swap": {
            "old_thumbprint": old, "pfx_path": "new.pfx", "pfx_password": pfx_password, "grant_key_access": True, "wait_timeout": 30,
        }, "register": "swap"},
        {"name": "binding", "xtractuniversal.tls.xu_tls_binding": {"web_protocol": "https_unrestricted", "wait_timeout": 30}},
        {"name": "restore", "xtractuniversal.tls.xu_tls_restore": {
            "backup_file": "{{ swap.backup_files.values() | first }}", "restart": "never",
        }},
        {"name": "gate open", "xtractuniversal.tls.xu_firewall_gate": {"state": "open"}},
        {"name": "journal gone", "xtractuniversal.tls.xu_journal": {"state": "absent"}},
    ]
    run = lab.playbook(tasks, tmp_path=tmp_path, verbosity=5, diff=True)
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert run.of("xu01", "swap")["new_thumbprint"] == minted["thumbprint"]

    secrets = {"PFX password": pfx_password, "WinRM password": lab.info["password"]}
    places: dict[str, bytes] = {
        "ansible-playbook output": (run.stdout + run.stderr).encode(),
        "task results": json.dumps(run.results).encode(),
        "lab.log": (lab.dir / "lab.log").read_bytes(),
    }
    for path in (lab.dir / "hosts").rglob("*"):
        if path.is_file():
            places[str(path.relative_to(lab.dir))] = path.read_bytes()
    assert any(name.endswith("transcript.log") for name in places)
    assert any(name.endswith("events.jsonl") for name in places)
    for secret_name, secret in secrets.items():
        for place, content in places.items():
            assert secret.encode() not in content, f"the {secret_name} is in {place}"
    # The PFX password did pass through the run: it reached the host, only ever on stdin.
    assert run.of("xu01", "swap")["changed"] is True and run.of("xu01", "swap")["imported"] is True
