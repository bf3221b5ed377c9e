"""The tls_report playbook's decisions: its variables, the rows and their order, the failures, the table and the files."""

from __future__ import annotations

import base64
import csv
import datetime
import hashlib
import io
import json
import os
import re
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.xtractuniversal.tls.plugins.filter.report import report_fleet, report_options
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.report._tls_report import (
    SCRIPT,
    ReportOptions,
    ReportOptionsError,
    csv_text,
    escape,
    fleet_report,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.report._tls_report import report_options as typed_options
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._tls_info import certificate_problems

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)
HOSTILE = '<script>alert("x")</script>{{ lookup("pipe", "id") }}'


def certificate(days_left: int, thumbprint: str = "AA" * 20, subject: str = "CN=xu.example.com") -> dict[str, Any]:
    not_after = NOW + datetime.timedelta(days=days_left, hours=1 if days_left >= 0 else -1)
    return {
        "thumbprint": thumbprint, "subject": subject, "not_after": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "days_left": days_left, "expired": days_left < 0, "in_store": True,
    }


def info(days_left: int | None, problems: list[str] | None = None, *, tls: bool = True, config: dict[str, Any] | None = None,
         subject: str = "CN=xu.example.com") -> dict[str, Any]:
    """An xu_tls_info result: TLS with one certificate for both servers, or TLS off when days_left is None."""
    cert = certificate(days_left, subject=subject) if days_left is not None and tls else None
    web = {"tls": tls, "protocol": "https_unrestricted" if tls else "http_unrestricted",
           "certificate_thumbprint": cert["thumbprint"] if cert else None, "certificate": cert}
    config_server = config or {"tls": tls, "certificate_thumbprint": web["certificate_thumbprint"], "certificate": cert}
    return {"changed": False, "installed": True, "web_server": web, "config_server": config_server, "problems": problems or []}


def report(infos: dict[str, Any], group: list[str] | None = None, targeted: list[str] | None = None, **options: Any) -> Any:
    hosts = group if group is not None else list(infos)
    return fleet_report(infos, hosts, targeted if targeted is not None else hosts, ReportOptions(**options), now=NOW)


# -- the variables --------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [("30", 30), (" 7 ", 7), ("0", 0), (30, 30), ("", 0), (None, 0), ("  ", 0)])
def test_fail_within_days_from_strings(given: Any, expected: int | None) -> None:
    assert typed_options({"xu_report_fail_within_days": given}).fail_within_days == expected


@pytest.mark.parametrize("given", ["soon", "-1", -1, "3.5", 3.5, True, "30d", [30]])
def test_fail_within_days_refuses_what_is_not_a_whole_number_of_days(given: Any) -> None:
    with pytest.raises(ReportOptionsError, match="xu_report_fail_within_days must be a whole number of days"):
        typed_options({"xu_report_fail_within_days": given})


@pytest.mark.parametrize(("given", "expected"), [("true", True), ("false", False), ("False", False), ("yes", True), ("no", False),
                                                 ("1", True), ("0", False), ("", True), (None, True), (True, True), (False, False)])
def test_fail_on_problems_from_strings(given: Any, expected: bool) -> None:
    # "false" is a true string in a condition: the filter must make it the boolean false.
    assert typed_options({"xu_report_fail_on_problems": given}).fail_on_problems is expected


@pytest.mark.parametrize("given", ["maybe", "2", "tru", 7])
def test_fail_on_problems_refuses_what_is_not_a_boolean(given: Any) -> None:
    with pytest.raises(ReportOptionsError, match="xu_report_fail_on_problems must be true or false"):
        typed_options({"xu_report_fail_on_problems": given})


def test_defaults_and_the_other_variables() -> None:
    options = typed_options({"xu_report_product": "", "xu_report_dir": "", "xu_report_hosts": ""})
    # An answer left empty (or null, as ansible-core 2.19 reads AWX's) takes the default, which fails a scheduled report on
    # an expired certificate (0 days) and on any problem.
    assert options == ReportOptions(0, True, "xtract_universal", "", "xu_servers")
    assert options.expiring_within_days == 30
    assert typed_options({"xu_report_product": "yunio"}).product == "yunio"
    assert typed_options({"xu_report_fail_within_days": "60"}).expiring_within_days == 60
    assert typed_options({"xu_report_dir": "reports"}).dir == os.path.join(os.getcwd(), "reports")
    # A relative directory is the playbook's (an AWX project's), not where the run started.
    assert typed_options({"xu_report_dir": "reports"}, "/srv/project").dir == "/srv/project/reports"
    assert typed_options({"xu_report_dir": "~/r"}).dir == os.path.expanduser("~/r")


def test_every_wrong_variable_is_named_at_once() -> None:
    with pytest.raises(ReportOptionsError) as raised:
        typed_options({"xu_report_product": "sap_gui", "xu_report_fail_within_days": "soon", "xu_report_typo": 1})
    message = str(raised.value)
    assert "xu_report_product must be one of xtract_universal, board_connector, yunio, not 'sap_gui'" in message
    assert "xu_report_fail_within_days" in message and "'soon'" in message
    assert "not variables of the report: xu_report_typo" in message


def test_the_filter_raises_ansible_filter_errors() -> None:
    assert report_options({"xu_report_fail_within_days": "30"})["fail_within_days"] == 30
    with pytest.raises(AnsibleFilterError, match="The report's variables: xu_report_fail_on_problems"):
        report_options({"xu_report_fail_on_problems": "maybe"})
    with pytest.raises(AnsibleFilterError, match="dict"):
        report_options("xu_report_fail_within_days=30")
    with pytest.raises(AnsibleFilterError, match="report_options"):
        report_fleet({}, [], [], {"fail_within_days": 30})
    with pytest.raises(AnsibleFilterError, match="group_hosts"):
        report_fleet({}, "xu_servers", [], report_options({}))


# -- rows and their order -------------------------------------------------------------------------


def test_most_urgent_first() -> None:
    infos = {
        "a-healthy": info(300),
        "b-long-expired": info(-40, ["expired"]),
        "c-expired-today": info(-1, ["expired"]),
        "d-expiring": info(9, ["expires in 9 days"]),
        "e-expiring-today": info(0, ["expires in 0 days"]),
        "f-tls-off": info(None, ["the web server serves plain HTTP (TLS is off)"], tls=False),
        "g-missing": info(39, ["not in LocalMachine\\My"]),
        "h-unreachable": {"unreachable": True, "msg": "timed out"},
        "i-healthy-sooner": info(200),
    }
    rows = report(infos, group=[*infos, "j-outside"], targeted=list(infos)).rows
    assert [row.host for row in rows] == [
        "b-long-expired", "c-expired-today", "e-expiring-today", "d-expiring", "h-unreachable", "f-tls-off", "g-missing",
        "i-healthy-sooner", "a-healthy", "j-outside",
    ]
    assert [row.status for row in rows] == [
        "expired", "expired", "expiring", "expiring", "unreachable", "tls_off", "problems", "ok", "ok", "not_targeted",
    ]


def test_the_expiring_window_edges() -> None:
    rows = {row.host: row.status for row in report({"at29": info(29), "at30": info(30)}).rows}
    assert rows == {"at29": "expiring", "at30": "ok"}
    rows = {row.host: row.status for row in report({"at59": info(59), "at60": info(60)}, fail_within_days=60).rows}
    assert rows == {"at59": "expiring", "at60": "ok"}


def test_ties_in_name_order() -> None:
    assert [row.host for row in report({"xu02": info(9), "xu01": info(9)}).rows] == ["xu01", "xu02"]


def test_a_host_that_could_not_be_read_gets_a_row_with_its_error() -> None:
    infos: dict[str, Any] = {
        "down": {"unreachable": True, "msg": "ntlm: HTTPSConnectionPool(host='127.0.0.9', port=5986):\n  timed out"},
        "broken": {"failed": True, "msg": "discover: the agent answered nothing"},
    }
    fleet = report(infos, group=["down", "broken", "lost"], targeted=["down", "broken", "lost"])
    rows = {row.host: row for row in fleet.rows}
    assert rows["down"].status == "unreachable"
    assert rows["down"].error == "ntlm: HTTPSConnectionPool(host='127.0.0.9', port=5986): timed out"
    assert rows["broken"].status == "unreadable" and rows["broken"].problems == ("could not be read: discover: the agent answered nothing",)
    assert rows["lost"].status == "unreachable" and "no result" in rows["lost"].error
    assert fleet.stats()["xu_report_results"]["down"]["error"].endswith("timed out")
    # Nothing is known of them, so they always fail the run.
    assert set(fleet.failures) == {"down", "broken", "lost"}
    assert fleet.failures["down"].startswith("Could not be reached: ntlm:")
    assert fleet.totals["unreachable"] == 3


def test_the_row_shows_the_certificate_that_expires_first() -> None:
    config = {"tls": True, "certificate_thumbprint": "BB" * 20, "certificate": certificate(5, thumbprint="BB" * 20)}
    row = report({"xu01": info(200, config=config)}).rows[0]
    assert [c.role for c in row.certificates] == ["web server", "configuration server"]
    assert row.soonest is not None and row.soonest.thumbprint == "BB" * 20 and row.status == "expiring"
    assert row.to_result()["days_left"] == 5
    shared = report({"xu01": info(200)}).rows[0]
    assert [c.role for c in shared.certificates] == ["web server and configuration server"]


# -- failing the run ------------------------------------------------------------------------------


def test_fail_within_days() -> None:
    infos = {"expired": info(-3, ["expired"]), "expiring": info(9, ["expires"]), "fine": info(40), "off": info(None, ["off"], tls=False)}
    assert set(report(infos, fail_on_problems=False).failures) == {"expired"}
    assert set(report(infos, fail_within_days=0, fail_on_problems=False).failures) == {"expired"}
    failures = report(infos, fail_within_days=30, fail_on_problems=False).failures
    assert set(failures) == {"expired", "expiring"}
    assert "expires in 9 days" in failures["expiring"] and "within xu_report_fail_within_days (30)" in failures["expiring"]
    assert "expired on" in failures["expired"]
    assert set(report(infos, fail_within_days=41, fail_on_problems=False).failures) == {"expired", "expiring", "fine"}


def test_fail_on_problems() -> None:
    infos = {"off": info(None, ["the web server serves plain HTTP (TLS is off)"], tls=False), "fine": info(300)}
    failures = report(infos, fail_on_problems=True).failures
    assert list(failures) == ["off"] and "TLS is off" in failures["off"] and "xu_report_fail_on_problems" in failures["off"]
    assert report(infos, fail_on_problems=False).failures == {}


def test_the_defaults_fail_on_expired_missing_and_tls_off_but_not_on_expiring() -> None:
    """A scheduled report must alert on what needs a person; a certificate expiring soon is the renewal's to handle."""
    sound = {"not_yet_valid": False, "san_covers_fqdn": True, "server_auth": True, "has_private_key": True}
    problems = {
        "expired": certificate_problems("web server", {**certificate(-3), **sound}, 30),
        "expiring": certificate_problems("web server", {**certificate(9), **sound}, 30),
        "missing": certificate_problems("web server", {**certificate(200), **sound, "in_store": False}, 30),
    }
    infos = {"expired": info(-3, problems["expired"]), "expiring": info(9, problems["expiring"]), "missing": info(200, problems["missing"]),
             "off": info(None, ["the web server serves plain HTTP (TLS is off)"], tls=False), "fine": info(300)}
    failures = report(infos).failures
    assert set(failures) == {"expired", "missing", "off"}
    # The expiry is said once, as xu_report_fail_within_days' reason.
    assert failures["expired"].count("expired on") == 1 and "xu_report_fail_on_problems" not in failures["expired"]
    assert "LocalMachine\\My" in failures["missing"] and "TLS is off" in failures["off"]


def test_the_hosts_outside_the_limit_are_one_line_of_the_table() -> None:
    group = [f"xu{number:03}" for number in range(1, 201)]
    fleet = report({"xu007": info(300)}, group=group, targeted=["xu007"])
    lines = fleet.lines()
    assert [line for line in lines if line.startswith("xu")] == [next(line for line in lines if line.startswith("xu007"))]
    assert lines[:2] == ["TOTAL  200 hosts: 1 ok, 199 not_targeted", "NOT TARGETED  199 hosts of the group are outside --limit (AWX: Limit)"]
    # The files keep a row for each.
    assert fleet.to_csv().count("not_targeted") == 199


def test_not_targeted_hosts_never_fail() -> None:
    fleet = report({"xu02": info(-3, ["expired"])}, group=["xu01", "xu02"], targeted=["xu02"], fail_within_days=30)
    assert list(fleet.failures) == ["xu02"]
    assert fleet.totals == {"hosts": 2, "ok": 0, "problems": 1, "expiring": 0, "expired": 1, "tls_off": 0, "unreachable": 0,
                            "not_targeted": 1}


# -- the table ------------------------------------------------------------------------------------


def test_the_table_is_one_line_per_item_with_columns_sized_to_the_content() -> None:
    long_name = "xu-production-frankfurt-primary-01.corp.example.com"
    infos = {long_name: info(9, ["the web server and configuration server certificate " + "AA" * 20 + " expires in 9 days"]),
             "xu02": info(300)}
    lines = report(infos, fail_within_days=30).lines()
    assert all("\n" not in line for line in lines)
    # The counts first, then the hosts that fail the run, then the table.
    total, fails, heading, first, *rest = lines
    assert total == "TOTAL  2 hosts: 1 expiring, 1 ok"
    assert fails == f"FAILS  1 host: {long_name}"
    assert heading.split()[:5] == ["HOST", "STATUS", "PROTOCOL", "THUMBPRINT", "NOT"] and "NOT AFTER" in heading
    # Every column starts where its heading does, however long the host name.
    assert heading.index("STATUS") == len(long_name) + 2
    assert first.startswith(long_name + "  expiring")
    assert first.index("AA" * 20) == heading.index("THUMBPRINT")
    assert first.index("2026-12-07T13:00:00Z") == heading.index("NOT AFTER")
    assert rest[0].startswith("  - the web server")
    assert all(len(line) <= 80 for line in rest if line.startswith("  "))
    xu02 = next(line for line in rest if line.startswith("xu02"))
    assert xu02.index("ok") == heading.index("STATUS")


def test_a_fleet_of_1000_is_counts_first_then_one_line_a_host_most_urgent_first() -> None:
    infos = {f"xu{n:04d}": info(300 - n % 7) for n in range(1, 1001)}
    expiring = {"xu0007": 20, "xu0500": 3, "xu0999": 12}
    for host, days in expiring.items():
        infos[host] = info(days, [f"the web server and configuration server certificate {'AA' * 20} expires in {days} days"])
    infos["xu0042"] = {"unreachable": True, "msg": "timed out"}
    lines = report(infos, fail_within_days=14).lines()
    assert lines[0] == "TOTAL  1000 hosts: 3 expiring, 1 unreachable, 996 ok"
    assert lines[1] == "FAILS  3 hosts: xu0500, xu0999, xu0042"
    assert lines[2].startswith("HOST ")
    hosts = [line.split()[0] for line in lines[3:] if not line.startswith(" ")]
    assert hosts[:4] == ["xu0500", "xu0999", "xu0007", "xu0042"] and len(hosts) == len(set(hosts)) == 1000
    # One line a host; below it only the problems of the four hosts that have one.
    assert len([line for line in lines if not line.startswith(" ")]) == 3 + 1000
    assert [line.split()[0] for line in lines if line.startswith("  - ")] == ["-"] * 4


def test_a_long_list_of_failing_hosts_is_cut_short_in_the_fails_line() -> None:
    infos = {f"xu{n:03d}": info(-1, ["expired"]) for n in range(1, 121)}
    lines = report(infos, fail_within_days=0).lines()
    fails = " ".join(line.strip() for line in lines if not line.startswith(("TOTAL", "HOST", "xu", "  -")))
    assert fails.startswith("FAILS  120 hosts: xu001, xu002,")
    assert fails.endswith("xu050 and 70 more") and "xu051" not in fails


def test_a_note_on_the_connection_is_printed_once_for_every_host_it_applies_to() -> None:
    basic = {"protected": False, "unprotected_allowed": False, "summary": "winrm over http, port 5985, transport basic"}
    infos = {f"xu{n:02d}": {**info(300), "transport": basic} for n in range(1, 61)}
    lines = report(infos).lines()
    notes = [line for line in lines if not line.startswith(("TOTAL", "HOST", "xu"))]
    assert notes[0].startswith("NOTE   all 60 hosts read: ") and all(line.startswith("       ") for line in notes[1:])
    assert " ".join(" ".join(notes).split()) == (
        "NOTE all 60 hosts read: the connection (winrm over http, port 5985, transport basic) is not encrypted:"
        " a PFX and its password are not sent over it (xu_allow_unprotected_transport)")
    assert len(lines) == 2 + 60 + len(notes)
    infos["xu01"] = {**info(300), "transport": {**basic, "protected": True}}
    joined = " ".join(" ".join(line.split()) for line in report(infos).lines() if not line.startswith(("TOTAL", "HOST", "xu")))
    assert joined.startswith("NOTE 59 hosts (xu02, xu03,") and "xu51 and 9 more): the connection" in joined


# -- the files ------------------------------------------------------------------------------------


def hostile_report() -> Any:
    return report({HOSTILE: info(5, [HOSTILE, "=HYPERLINK(\"http://evil\")"], subject=f"CN={HOSTILE}, O=\"a,b\"")}, fail_within_days=30)


def test_report_json_holds_the_set_stats_data() -> None:
    fleet = hostile_report()
    assert json.loads(fleet.to_json()) == fleet.stats()
    result = fleet.stats()["xu_report_results"][HOSTILE]
    assert set(result) >= {"thumbprint", "not_after", "days_left", "problems"}
    assert result["days_left"] == 5 and result["problems"][0] == HOSTILE


def test_report_csv_has_a_header_and_survives_quotes_commas_and_formulas() -> None:
    fleet = hostile_report()
    rows = list(csv.reader(io.StringIO(fleet.to_csv())))
    assert rows[0] == ["host", "status", "protocol", "thumbprint", "subject", "not_after", "days_left", "problems", "error"]
    assert len(rows) == 2
    host, status, _protocol, thumbprint, subject, _not_after, days_left, problems, _error = rows[1]
    assert (host, status, thumbprint, days_left) == (HOSTILE, "expiring", "AA" * 20, "5")
    assert subject == f"CN={HOSTILE}, O=\"a,b\""
    # A spreadsheet would run a cell that starts with "=": it is made text.
    assert problems == f"{HOSTILE}; =HYPERLINK(\"http://evil\")"
    assert csv_text("=1+1") == "'=1+1" and csv_text("@SUM(A1)") == "'@SUM(A1)" and csv_text("-3") == "'-3"
    assert csv_text("CN=x") == "CN=x"


def test_report_html_escapes_every_value() -> None:
    page = hostile_report().to_html()
    # The page's own script, and no other.
    assert page.lower().count("<script") == 1 and f"<script>{SCRIPT}</script>" in page
    assert "{{" not in page and "{%" not in page
    assert escape(HOSTILE) in page
    assert escape(HOSTILE) == ("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#123;&#123; lookup(&quot;pipe&quot;, "
                               "&quot;id&quot;) &#125;&#125;")
    # In attributes too (data-host), where a quote would end the value.
    assert f'data-host="{escape(HOSTILE)}"' in page


def test_report_html_is_self_contained() -> None:
    page = report({"xu01": info(9), "xu02": info(400), "xu03": info(-2)}).to_html()
    assert not re.search(r"(src|href)\s*=", page, re.IGNORECASE)
    assert "http://" not in page and "https://" not in page and "url(" not in page and "@import" not in page
    assert "default-src 'none'" in page
    assert page.count('<g class="cert"') == 3
    assert "2028-01-02T13:00:00Z (400 days) (beyond the year)" in page and "expired " in page


def test_report_html_runs_its_own_script_and_nothing_else() -> None:
    page = report({"xu01": info(9)}).to_html()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy is not None
    directives = dict(d.strip().split(" ", 1) for d in policy.group(1).split(";"))
    assert directives["default-src"] == "'none'" and "unsafe-inline" not in directives["script-src"]
    # The hash the policy allows is the script's, as the browser computes it over the element's text.
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode("utf-8")).digest()).decode("ascii")
    assert directives["script-src"] == f"'sha256-{digest}'"


def test_report_html_puts_the_counts_first_and_the_timeline_above_the_table() -> None:
    infos = {f"xu{n:04d}": info(300 - n % 200) for n in range(1, 1001)}
    page = report(infos).to_html()
    assert page.index('class="totals"') < page.index('id="timeline"') < page.index('id="fleet"')
    # One row per host, each with what the script sorts and filters by.
    assert page.count("<tr class=\"row-") == 1000
    assert page.count('<tr class="row-ok" data-host="') == page.count(' data-status="ok" data-order="') == 1000
    assert 'data-order="999"' in page
    assert len(page) < 2_000_000
