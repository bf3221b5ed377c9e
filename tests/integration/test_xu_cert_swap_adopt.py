"""xu_cert_swap new_thumbprint: auto against the lab: the better certificate is adopted, every near miss is left alone."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from labtools import Lab
from test_xu_cert_swap import bound, changes, served, start, store, swap_task

NEAR_MISSES = ("wrong_san", "no_key", "no_eku", "other_issuer", "expired", "not_yet_valid", "shorter")


def plant(lab: Lab, kind: str, host: str = "xu01") -> str:
    planted: dict[str, Any] = json.loads(lab.xulab("plant", "--dir", str(lab.dir), "--host", host, "--kind", kind))
    thumbprint: str = planted["thumbprint"]
    return thumbprint


def test_auto_adopts_the_better_certificate_and_passes_over_every_near_miss(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab = start(lab_factory)
    old = bound(lab)
    misses = {kind: plant(lab, kind) for kind in NEAR_MISSES}
    # The issuer is pinned: a certificate of the partner CA (otherwise fine, and trusted) is one more near miss.
    task = swap_task(old_thumbprint=old, new_thumbprint="auto", adopt_issuer="CN=xulab Root CA", grant_key_access=True, remove_old=True,
                     fqdn="xu01.xulab.test")

    # Only near misses: nothing qualifies, nothing changes, each is named with its reason.
    before, events_before = lab.host_files("xu01"), changes(lab)
    none = lab.playbook([task], tmp_path=tmp_path)
    assert none.rc == 0, none.stdout + none.stderr
    result = none.of("xu01", "swap")
    assert result["changed"] is False and result["adoption"]["chosen"] is None
    reasons = {entry["thumbprint"]: entry["reason"] for entry in result["adoption"]["passed_over"]}
    assert set(misses.values()) <= set(reasons), reasons
    assert "SAN does not name xu01.xulab.test" in reasons[misses["wrong_san"]] and "no private key" in reasons[misses["no_key"]]
    assert "Server Authentication" in reasons[misses["no_eku"]] and "expired" in reasons[misses["expired"]]
    assert "not valid before" in reasons[misses["not_yet_valid"]] and "expire later" in reasons[misses["shorter"]]
    assert lab.host_files("xu01") == before and changes(lab) == events_before

    assert "does not match 'CN=xulab Root CA'" in reasons[misses["other_issuer"]]

    better = plant(lab, "better")
    checked = lab.playbook([task], tmp_path=tmp_path, check=True)
    assert checked.of("xu01", "swap")["changed"] is True and checked.of("xu01", "swap")["new_thumbprint"] == better
    assert bound(lab) == old and old in store(lab)

    done = lab.playbook([task], tmp_path=tmp_path)
    assert done.rc == 0, done.stdout + done.stderr
    result = done.of("xu01", "swap")
    assert result["new_thumbprint"] == better and result["adoption"]["chosen"] == better and result["removed_old"] is True
    # Seen from outside: bound, served on every TLS port, readable by the service, the old one gone, the misses kept.
    assert bound(lab) == better and set(served(lab).values()) == {better}
    assert old not in store(lab)
    assert all(thumbprint in {c["thumbprint"] for c in lab.state("xu01")["certificates"]} for thumbprint in misses.values())
    assert any("Certificate" in str(e.get("message")) and better in str(e.get("message")) for e in lab.events("xu01", "eventlog"))

    # The next scheduled run finds nothing better than what is bound now.
    again = lab.playbook([swap_task(**{**task["xtractuniversal.tls.xu_cert_swap"], "old_thumbprint": better})], tmp_path=tmp_path)
    assert again.rc == 0 and again.of("xu01", "swap")["changed"] is False and again.of("xu01", "swap")["adoption"]["chosen"] is None


def test_enroll_swaps_to_a_new_key_enrolled_as_the_machine(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab = start(lab_factory)
    old = bound(lab)
    old_key = store(lab)[old]["key_id"]
    task = swap_task(old_thumbprint=old, enroll={"template": "WebServer"}, fqdn="xu01.xulab.test", grant_key_access=True, remove_old=True)
    before = lab.host_files("xu01")
    checked = lab.playbook([task], tmp_path=tmp_path, check=True)
    assert checked.of("xu01", "swap")["enrolled"] is True and lab.host_files("xu01") == before and not lab.events("xu01", "enrol")

    done = lab.playbook([task], tmp_path=tmp_path)
    assert done.rc == 0, done.stdout + done.stderr
    new = done.of("xu01", "swap")["new_thumbprint"]
    (enrolment,) = lab.events("xu01", "enrol")
    assert enrolment.get("thumbprint", new) == new
    assert bound(lab) == new and set(served(lab).values()) == {new} and old not in store(lab)
    # A new key, not exportable, readable by the service because it was granted, in a certificate issued as the machine.
    entry = store(lab)[new]
    assert entry["has_private_key"] is True and entry["exportable"] is False and entry["key_id"] != old_key
    assert any(rule["identity"] == "NT SERVICE\\XtractUniversal Service" and rule["rights"] == "Read" for rule in entry["key_acl"])
    assert entry["san"] == ["xu01.xulab.test"] and done.of("xu01", "swap")["key_access_granted"] is True

    # A template no CA publishes: the host's list of the forest's CAs says so before certreq runs; nothing changed.
    refused = lab.playbook([swap_task(old_thumbprint=new, enroll={"template": "NoSuchTemplate"}, fqdn="xu01.xulab.test")], tmp_path=tmp_path)
    result = refused.of("xu01", "swap")
    assert refused.rc != 0 and result["_status"] == "failed" and bound(lab) == new
    assert result["msg"].startswith("No enterprise CA of the forest publishes the template NoSuchTemplate")
    # Named, the CA gets the request and refuses it as certreq reports it.
    named = {"template": "NoSuchTemplate", "ca_config": lab.info["ca"]["config"]}
    refused = lab.playbook([swap_task(old_thumbprint=new, enroll=named, fqdn="xu01.xulab.test")], tmp_path=tmp_path)
    result = refused.of("xu01", "swap")
    assert refused.rc != 0 and "certreq exited with" in result["msg"] and bound(lab) == new
