from __future__ import annotations

import dataclasses
import json

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._snapshot import settings_files_of
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._profiles import PROFILES, resolve_profile
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._settings import (
    SettingsError,
    SettingsFile,
    find_thumbprint_references,
    get_path,
    join_path,
    read_tls_state,
    split_path,
)
from support.fake_host import tls_json

TP1 = "AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6"
TP2 = "1111111111111111111111111111111111111111"
XU = PROFILES["xtract_universal"]


def settings(path: str, content: str | None) -> SettingsFile:
    return SettingsFile(path, f"C:\\XU\\{path}", content is not None, content, None)


def files(**by_path: str | None) -> dict[str, SettingsFile]:
    return {path: settings(path, content) for path, content in by_path.items()}


@pytest.mark.parametrize(
    ("path", "tokens"),
    [("A", ["A"]), ("A.B.C", ["A", "B", "C"]), ("A[0].B", ["A", 0, "B"]), ("Bindings[12]", ["Bindings", 12])],
)
def test_paths_round_trip(path: str, tokens: list[str | int]) -> None:
    assert split_path(path) == tokens
    assert join_path(tokens) == path


@pytest.mark.parametrize("bad", ["", "A..B", "A[x]", ".A", "A.", "A[0"])
def test_invalid_paths(bad: str) -> None:
    with pytest.raises(SettingsError):
        split_path(bad)


def test_get_path_is_case_insensitive_like_dotnet() -> None:
    document = {"webServer": {"certificate": {"thumbprint": TP1}}, "List": [{"x": 1}]}
    assert get_path(document, "WebServer.Certificate.Thumbprint") == TP1
    assert get_path(document, "List[0].X") == 1
    assert get_path(document, "List[3].X") is None
    assert get_path(document, "Missing.Key") is None


LAYOUTS = {
    "assumed": json.loads(tls_json(web=TP1.lower(), config=TP1)),
    "flat": {"Protocol": "HttpsUnrestricted", "CertificateThumbprint": "\u200e" + TP1, "DesignerThumbprint": TP2},
    "list": {"Endpoints": [{"Name": "web", "Hash": TP1}, {"Name": "config", "Hash": TP2.lower()}]},
}


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("assumed", [("WebServer.Certificate.Thumbprint", TP1), ("ConfigServer.Certificate.Thumbprint", TP1)]),
        ("flat", [("CertificateThumbprint", TP1), ("DesignerThumbprint", TP2)]),
        ("list", [("Endpoints[0].Hash", TP1), ("Endpoints[1].Hash", TP2)]),
    ],
)
def test_references_are_found_whatever_the_layout(layout: str, expected: list[tuple[str, str]]) -> None:
    found = find_thumbprint_references([settings("config\\servers\\tls.json", json.dumps(LAYOUTS[layout]))])
    assert [(r.path, r.thumbprint) for r in found] == expected
    assert all(r.file == "C:\\XU\\config\\servers\\tls.json" for r in found)


def test_references_skip_non_json_and_broken_files() -> None:
    found = find_thumbprint_references([
        settings("config\\version.txt", TP1),
        settings("config\\servers\\tls.json", "{not json"),
        settings("config\\servers\\web\\general.json", None),
    ])
    assert found == []


def test_tls_state_from_the_assumed_layout() -> None:
    state = read_tls_state(files(**{
        "config\\servers\\tls.json": tls_json(web=TP1, auth="CustomCredentialsTls", config=TP2.lower()),
        "config\\server\\web\\general.json": json.dumps({"HttpPort": 9065, "HttpsPort": 9165}),
    }), XU)
    assert state.tls_file_exists
    assert (state.web_protocol, state.web_certificate) == ("https_unrestricted", TP1)
    assert (state.config_server_authentication, state.config_server_certificate) == ("custom_credentials_tls", TP2)
    assert state.web_uses_tls and state.config_server_uses_tls
    # The documentation spells the folder "server" in places; both are read.
    assert (state.web_http_port, state.web_https_port, state.config_server_port) == (9065, 9165, 8064)


def test_missing_tls_json_is_xu_default_plain_http() -> None:
    state = read_tls_state(files(), XU)
    assert not state.tls_file_exists
    assert state.web_protocol == "http_unrestricted" and not state.web_uses_tls
    assert state.config_server_authentication == "windows_credentials" and not state.config_server_uses_tls


def test_unknown_protocol_value_is_reported_raw() -> None:
    state = read_tls_state(files(**{"config\\servers\\tls.json": json.dumps({"WebServer": {"Protocol": "Quic"}})}), XU)
    assert state.web_protocol is None and state.web_protocol_raw == "Quic"


def test_broken_tls_json_is_an_error() -> None:
    with pytest.raises(SettingsError, match="Unable to parse"):
        read_tls_state(files(**{"config\\servers\\tls.json": "{"}), XU)


def test_settings_map_overrides_the_assumption() -> None:
    profile = resolve_profile({"product": "xtract_universal", "settings_map": {"web_certificate": "Endpoints[0].Hash", "web_protocol": None}})
    assert profile.settings_map["web_certificate"] == "Endpoints[0].Hash"
    assert profile.settings_map["web_protocol"] == "WebServer.Protocol"
    state = read_tls_state(files(**{"config\\servers\\tls.json": json.dumps({**LAYOUTS["list"], "WebServer": {"Protocol": "HttpsUnrestricted"}})}), profile)
    assert state.web_certificate == TP1


def test_profile_overrides() -> None:
    profile = resolve_profile({"product": "board_connector", "install_dir": "D:\\BC", "web_https_port": 9443, "service_name": None})
    assert profile.install_dir == "D:\\BC"
    assert profile.ports() == [8097, 9443, 8096]
    assert profile.service_display_name == "BOARD Connector"
    assert profile.install_dir_explicit and not resolve_profile({}).install_dir_explicit
    assert resolve_profile({"product": "yunio"}).ports() == [8075, 8175]


def test_settings_missing_from_an_existing_file_are_xu_defaults() -> None:
    state = read_tls_state(files(**{"config\\servers\\tls.json": json.dumps({"WebServer": {}})}), XU)
    assert state.tls_file_exists
    assert state.web_protocol == "http_unrestricted" and state.config_server_authentication == "windows_credentials"


def test_a_file_that_is_not_utf8_is_never_read_as_json() -> None:
    broken = SettingsFile("config\\servers\\tls.json", "C:\\x\\tls.json", True, None, "ab" * 32, bom=False, utf8_valid=False)
    with pytest.raises(SettingsError, match="not valid UTF-8"):
        broken.document()
    # A missing file is not an encoding problem.
    assert SettingsFile("a", "C:\\a", False, None, None, utf8_valid=False).document() is None


def test_a_missing_file_read_from_the_host_is_not_an_encoding_problem() -> None:
    files = settings_files_of({"files": [
        {"path": "a.json", "full_path": "C:\\a.json", "exists": False, "content": None, "bom": False, "utf8_valid": False, "sha256": None},
        {"path": "b.json", "full_path": "C:\\b.json", "exists": True, "content": None, "bom": False, "utf8_valid": False, "sha256": "00"},
    ]})
    assert files["a.json"].utf8_valid is True
    # Written by a module later, it is read as the text the module wrote.
    assert dataclasses.replace(files["a.json"], exists=True, content="{}").document() == {}
    with pytest.raises(SettingsError, match="not valid UTF-8"):
        files["b.json"].document()


@pytest.mark.parametrize("content", ["null", "[]", "42", '"text"'])
def test_a_tls_json_that_is_not_an_object_is_not_taken_for_plain_http(content: str) -> None:
    files = {"config\\servers\\tls.json": SettingsFile("config\\servers\\tls.json", "C:\\XU\\config\\servers\\tls.json", True, content, "ab")}
    with pytest.raises(SettingsError, match="not a JSON object: the service cannot start with it"):
        read_tls_state(files, resolve_profile({}))


def test_a_tls_json_nested_too_deeply_is_a_clear_error() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(SettingsError, match="nested too deeply"):
        SettingsFile("tls.json", "C:\\XU\\tls.json", True, deep, "ab").document()
