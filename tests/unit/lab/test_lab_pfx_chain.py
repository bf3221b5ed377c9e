"""pfx_import's chain: a PFX's intermediates reach LocalMachine\\CA, its root never reaches any store, and XU sends the chain."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Mapping
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from lab.labkit import AgentCall, HostFactory, events, only_result, results, run

from xulab import offload
from xulab.ca import PfxPasswordError, is_intermediate, pfx_from_portable, read_pfx, read_pfx_portable
from xulab.certstore import StoredCertificate
from xulab.host import Host
from xulab.renewals import issue_pfx
from xulab.xusettings import TLS_SETTINGS

TLS_JSON = "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json"
RESTART = ("service_restart", {"name": "XtractUniversal Service", "wait_ports": [8165], "timeout_s": 5})
PASSWORD = "pfx-pass"  # noqa: S105 - a test value


def bound(host: Host) -> str:
    value: str = json.loads(host.fs.resolve(TLS_SETTINGS).read_text())["WebServer"]["Certificate"]["Thumbprint"]
    return value


def pfx_import(minted: Mapping[str, object]) -> tuple[str, dict[str, object]]:
    return ("pfx_import", {"pfx_b64": minted["pfx_b64"], "password": PASSWORD, "exportable": False})


async def verifies_with_only_the_root(host: Host, ca_pem: Path) -> bool:
    """A client that trusts the lab root and nothing else: it succeeds only when the server sends the intermediate."""
    context = ssl.create_default_context(cafile=str(ca_pem))
    context.check_hostname = False
    try:
        _reader, writer = await asyncio.open_connection(host.address, 8165, ssl=context)
    except ssl.SSLCertVerificationError:
        return False
    writer.transport.abort()
    return True


def test_is_intermediate_is_a_ca_that_is_not_self_signed(host_factory: HostFactory) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            contents = read_pfx(base64.b64decode(str(issue_pfx(host, PASSWORD, intermediate=True)["pfx_b64"])), PASSWORD)
            issuing, root = contents.others
            assert [is_intermediate(c) for c in (contents.certificate, issuing, root)] == [False, True, False]
            assert root == host.ca.certificate

    run(scenario())


def test_the_intermediates_of_a_pfx_go_to_the_ca_store_and_the_root_nowhere(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            root_store = [e.thumbprint for e in host.stores.open("Root").entries()]
            minted = issue_pfx(host, PASSWORD, intermediate=True)
            intermediate = str(minted["intermediate"])
            _result, answer = await agent_call(host, [pfx_import(minted)])
            assert only_result(answer) == {"thumbprint": minted["thumbprint"], "already_present": False, "repaired": False, "chain_added": [intermediate]}
            assert [e.thumbprint for e in host.stores.open("CA").entries()] == [intermediate]
            assert [e.thumbprint for e in host.stores.open("Root").entries()] == root_store
            stored = host.stores.open("CA").get(intermediate)
            assert stored is not None and stored.key is None
            added = [(e["thumbprint"], e["store"], e["source"]) for e in events(host, "cert_add")[-2:]]
            assert added == [(minted["thumbprint"], "My", "pfx_import"), (intermediate, "CA", "pfx_import")]
            (listed,) = host.state()["intermediate_certificates"]
            assert listed["thumbprint"] == intermediate and listed["subject"] == "CN=xulab Issuing CA,O=xulab"
            # Again: the leaf is there and so is the intermediate; nothing changes.
            count = len(events(host, "cert_add"))
            _result, answer = await agent_call(host, [pfx_import(minted)])
            assert only_result(answer) == {"thumbprint": minted["thumbprint"], "already_present": True, "repaired": False, "chain_added": []}
            assert len(events(host, "cert_add")) == count
            # An intermediate removed since is put back, also when the leaf is already present.
            host.remove_certificate(intermediate, host.stores.open("CA"))
            assert events(host, "cert_remove")[-1]["store"] == "CA"
            _result, answer = await agent_call(host, [pfx_import(minted)])
            assert only_result(answer) == {"thumbprint": minted["thumbprint"], "already_present": True, "repaired": False, "chain_added": [intermediate]}
            # Another leaf of the same issuing CA: the intermediate is already there.
            other = issue_pfx(host, PASSWORD, intermediate=True, dns_names=["other.xulab.test"])
            _result, answer = await agent_call(host, [pfx_import(other)])
            assert only_result(answer)["chain_added"] == []

    run(scenario())


def test_xu_sends_the_intermediate_once_it_is_in_the_ca_store(host_factory: HostFactory, agent_call: AgentCall, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            ca_pem = tmp_path / "ca.pem"
            ca_pem.write_bytes(host.ca.pem())
            assert await verifies_with_only_the_root(host, ca_pem)  # a leaf signed by the root itself
            minted = issue_pfx(host, PASSWORD, intermediate=True)
            text = host.fs.resolve(TLS_SETTINGS).read_text().replace(bound(host), str(minted["thumbprint"]))
            grant = ("key_grant_read", {"thumbprint": minted["thumbprint"], "account": "NT Service\\XtractUniversal Service"})
            _result, answer = await agent_call(host, [pfx_import(minted), grant, ("file_write", {"path": TLS_JSON, "content": text}), RESTART])
            assert [r["status"] for r in results(answer)] == ["ok"] * 4
            assert host.service.listeners[-1].thumbprint == minted["thumbprint"]
            assert await verifies_with_only_the_root(host, ca_pem)
            # Without the intermediate in LocalMachine\CA the server sends the leaf alone: the root does not suffice.
            host.remove_certificate(str(minted["intermediate"]), host.stores.open("CA"))
            _result, answer = await agent_call(host, [RESTART])
            assert only_result(answer)["started"] is True
            assert not await verifies_with_only_the_root(host, ca_pem)

    run(scenario())


def test_a_pfx_of_the_leaf_alone_adds_no_chain(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            certificate, key = host.mint(host.default_request(days_left=200))
            pfx = serialization.pkcs12.serialize_key_and_certificates(
                b"leaf", key, certificate, None, serialization.BestAvailableEncryption(PASSWORD.encode())
            )
            minted = {"pfx_b64": base64.b64encode(pfx).decode("ascii")}
            _result, answer = await agent_call(host, [pfx_import(minted)])
            thumbprint = StoredCertificate(certificate, None).thumbprint
            assert only_result(answer) == {"thumbprint": thumbprint, "already_present": False, "repaired": False, "chain_added": []}

    run(scenario())


def test_a_pfx_opened_in_a_worker_process_is_the_pfx_opened_in_place(host_factory: HostFactory) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            data = base64.b64decode(str(issue_pfx(host, PASSWORD, intermediate=True)["pfx_b64"]))
            in_place = read_pfx(data, PASSWORD)
            offload.start()
            try:
                portable = await offload.run(read_pfx_portable, data, PASSWORD)
                wrong = await offload.run(read_pfx_portable, data, "not it")
                garbage = await offload.run(read_pfx_portable, b"not a pfx", None)
            finally:
                offload.stop()
            crossed = pfx_from_portable(portable)
            assert crossed.certificate == in_place.certificate and crossed.others == in_place.others
            assert crossed.friendly_name == in_place.friendly_name
            assert crossed.key is not None and in_place.key is not None
            assert crossed.key.private_numbers() == in_place.key.private_numbers()
            # The password and format errors come back as read_pfx raises them.
            for answer, not_a_pfx in ((wrong, False), (garbage, True)):
                with pytest.raises(PfxPasswordError) as raised:
                    pfx_from_portable(answer)
                assert raised.value.not_a_pfx is not_a_pfx

    run(scenario())
