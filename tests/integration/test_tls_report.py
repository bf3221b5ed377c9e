"""The tls_report playbook against the lab: thresholds that fail the run, set_stats, --limit, the files, and report.html
in a real headless browser (Debian's chromium) with the network off."""

from __future__ import annotations

import csv
import datetime
import io
import json
import pathlib
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from typing import Any

import pytest
import yaml
from labtools import REPO, Lab, PlaybookRun

# The report's backend renders the hostile page below; the collection is importable from the checkout's link.
sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._report import ReportOptions, fleet_report

PLAYBOOK = str(REPO / "playbooks" / "tls_report.yml")
TABLE_TASK = "Print the fleet summary"
STATS_TASK = "Hand the results and totals to AWX as job artifacts"
DEFAULT_CALLBACK = {"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}


def report(lab: Lab, tmp_path: pathlib.Path, *extra: str, env: dict[str, str] | None = None) -> PlaybookRun:
    return lab.playbook(PLAYBOOK, tmp_path=tmp_path, extra_args=("-f", "10", *extra), env=env)


def stats(run: PlaybookRun) -> dict[str, Any]:
    for entry in run.results:
        if entry["task"] == STATS_TASK:
            data: dict[str, Any] = entry["result"]["ansible_stats"]["data"]
            return data
    raise AssertionError(f"no set_stats result\n{run.stdout[-4000:]}")


def table(run: PlaybookRun) -> list[str]:
    lines: list[str] = next(e["result"]["msg"] for e in run.results if e["task"] == TABLE_TASK)
    return lines


def failed_messages(run: PlaybookRun) -> dict[str, str]:
    return {e["host"]: e["result"]["msg"] for e in run.results if e["status"] == "failed"}


@pytest.mark.lab
def test_fails_on_the_expiring_and_expired_hosts_says_why_and_writes_the_files(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed")
    out = tmp_path / "reports"
    run = report(lab, tmp_path, "-e", "xu_report_fail_within_days=30", "-e", "xu_report_fail_on_problems=false", "-e", f"xu_report_dir={out}")
    assert run.rc == 2, run.stdout[-4000:]
    # The mixed lab: xu02 expires in 9 days, xu03 has expired; they alone fail (the other problems are not asked about),
    # each naming its certificate and the threshold.
    messages = failed_messages(run)
    assert set(messages) == {"xu02", "xu03"}
    assert "expires in 9 days" in messages["xu02"] and "within xu_report_fail_within_days (30)" in messages["xu02"]
    assert "expired on" in messages["xu03"]
    # One remote call per host, whatever the report does after.
    assert all(lab.remote_calls(host) == 1 for host in lab.hosts)

    data = stats(run)
    assert data["xu_report_totals"] == {"hosts": 5, "ok": 1, "problems": 4, "expiring": 1, "expired": 1, "tls_off": 1,
                                        "unreachable": 0, "not_targeted": 0}
    results = data["xu_report_results"]
    assert list(results) == ["xu03", "xu02", "xu04", "xu05", "xu01"]  # most urgent first
    for host in lab.hosts:
        info = run.of(host, "Read the TLS state")
        cert = info["web_server"]["certificate"] or {}
        assert results[host]["thumbprint"] == info["web_server"]["certificate_thumbprint"]
        assert results[host]["not_after"] == cert.get("not_after")
        assert results[host]["days_left"] == cert.get("days_left")
        assert results[host]["problems"] == info["problems"]
    assert results["xu04"]["status"] == "tls_off" and results["xu04"]["thumbprint"] is None

    lines = table(run)
    assert [line.split()[0] for line in lines[1:] if line[:1].isalnum() and not line.startswith(("TOTAL", "FAILS"))] == list(results)
    assert "NOT AFTER" in lines[0] and "TOTAL  5 hosts: 1 expired, 1 expiring, 1 tls_off, 1 problems, 1 ok" in lines

    assert sorted(p.name for p in out.iterdir()) == ["report.csv", "report.html", "report.json"]
    assert json.loads((out / "report.json").read_text()) == data
    rows = list(csv.DictReader(io.StringIO((out / "report.csv").read_text())))
    assert [row["host"] for row in rows] == list(results)
    assert rows[0]["status"] == "expired" and rows[0]["not_after"] == results["xu03"]["not_after"]


@pytest.mark.lab
def test_passes_on_a_healthy_fleet_with_the_threshold_at_0_and_strings_for_every_variable(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "healthy")
    run = report(lab, tmp_path, "-e", "xu_report_fail_within_days=0", "-e", "xu_report_fail_on_problems=true",
                 "-e", "xu_report_product=xtract_universal", "-e", "xu_report_dir=", "-e", "xu_report_hosts=xu_servers")
    assert run.rc == 0, run.stdout[-4000:]
    assert stats(run)["xu_report_totals"]["ok"] == 2
    assert not list(tmp_path.glob("**/report.html"))


@pytest.mark.lab
def test_fail_on_problems_false_as_a_string_does_not_fail(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed")
    # "false" would be a true string in a condition: only the expired xu03 fails, by xu_report_fail_within_days (default 0).
    quiet = report(lab, tmp_path, "-e", "xu_report_fail_on_problems=false")
    assert quiet.rc == 2 and set(failed_messages(quiet)) == {"xu03"}
    # TLS off (xu04) and a certificate missing from the store (xu05) are problems; expiring soon (xu02) is not one.
    run = report(lab, tmp_path, "-e", "xu_report_fail_on_problems=true")
    assert run.rc == 2 and set(failed_messages(run)) == {"xu03", "xu04", "xu05"}


@pytest.mark.lab
@pytest.mark.parametrize(("variable", "value"), [("xu_report_fail_within_days", "soon"), ("xu_report_fail_on_problems", "maybe"),
                                                 ("xu_report_product", "sap_gui")])
def test_a_wrong_variable_is_named_before_any_host_is_read(variable: str, value: str, lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "healthy")
    run = report(lab, tmp_path, "-e", f"{variable}={value}")
    assert run.rc != 0
    assert f"{variable} must be" in run.stdout + run.stderr and repr(value) in run.stdout + run.stderr
    assert all(lab.remote_calls(host) == 0 for host in lab.hosts)


@pytest.mark.lab
def test_limit_reports_the_rest_as_not_targeted_and_localhost_changes_nothing(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed")
    for limit in ("xu03", "localhost,xu03"):
        run = report(lab, tmp_path, "-e", "xu_report_fail_within_days=30", "--limit", limit)
        assert run.rc == 2, run.stdout[-4000:]
        assert list(failed_messages(run)) == ["xu03"]
        results = stats(run)["xu_report_results"]
        assert {host: r["status"] for host, r in results.items()} == {
            "xu03": "expired", "xu01": "not_targeted", "xu02": "not_targeted", "xu04": "not_targeted", "xu05": "not_targeted"}
        assert stats(run)["xu_report_totals"]["unreachable"] == 0
        assert "TOTAL  5 hosts: 1 expired, 4 not_targeted" in table(run)
        assert "unreachable" not in run.stdout.split("PLAY RECAP")[0]
    assert lab.remote_calls("xu01") == 0


@pytest.mark.lab
def test_an_unreachable_host_gets_a_row_with_its_error_and_fails_the_run(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy")
    inventory = yaml.safe_load(lab.inventory.read_text())
    # A server whose WinRM does not answer: nothing listens on that loopback address.
    inventory["all"]["children"]["xu_servers"]["hosts"]["xu99"] = {"ansible_host": "127.0.0.9", "ansible_winrm_connection_timeout": 3}
    lab.inventory.write_text(yaml.safe_dump(inventory))
    run = report(lab, tmp_path, "-e", f"xu_report_dir={tmp_path / 'out'}")
    assert run.rc == 2, run.stdout[-4000:]
    assert list(failed_messages(run)) == ["xu99"] and failed_messages(run)["xu99"].startswith("Could not be reached: ")
    result = stats(run)["xu_report_results"]["xu99"]
    assert result["status"] == "unreachable" and result["error"] and result["thumbprint"] is None
    assert stats(run)["xu_report_totals"]["unreachable"] == 1
    lines = table(run)
    assert lines[1].startswith("xu99") and lines[2].startswith("  - could not be reached: ")
    assert (tmp_path / "out" / "report.html").exists()


@pytest.mark.lab
def test_the_table_reads_one_line_per_item_under_the_default_callback(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed")
    run = report(lab, tmp_path, env=DEFAULT_CALLBACK)
    # By default the mixed fleet fails the run: an expired certificate, one missing from the store, TLS off.
    assert run.rc == 2, run.stdout[-4000:]
    printed = run.stdout.split(f"TASK [{TABLE_TASK}]", 1)[1].split("TASK [", 1)[0]
    assert "\\n" not in printed  # no JSON string with escaped line breaks
    rows = [line.strip().strip('",') for line in printed.splitlines() if line.strip().startswith('"xu0')]
    assert [row.split()[:2] for row in rows] == [["xu03", "expired"], ["xu02", "expiring"], ["xu04", "tls_off"], ["xu05", "problems"],
                                                 ["xu01", "ok"]]


# -- report.html in a real browser --------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "chromium"
# No network for the page: every name resolves nowhere and every connection goes to a closed port. Chromium's own
# background services are switched off; the net log still records whatever the page asks for.
OFFLINE = ("--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
           "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND")


class Dom(HTMLParser):
    """The elements of a dumped DOM: (tag, attributes) in document order, and the text."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {name: value or "" for name, value in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def browse(page: pathlib.Path, work: pathlib.Path, *action: str) -> tuple[str, list[str]]:
    """Chromium's output for the page (the DOM with --dump-dom) and every URL the page asked the network for."""
    net_log = work / f"net-{page.stem}-{len(list(work.glob('net-*')))}.json"
    done = subprocess.run(
        [CHROMIUM, *OFFLINE, f"--user-data-dir={work / 'profile'}", f"--log-net-log={net_log}", *action, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, page_requests(json.loads(net_log.read_text()))


def page_requests(net_log: dict[str, Any]) -> list[str]:
    """The URLs of the requests the page made: their network isolation key is the page's file:// origin."""
    start_job = net_log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        e["params"]["url"] for e in net_log["events"]
        if e["type"] == start_job and str(e.get("params", {}).get("network_isolation_key", "")).startswith("file://")
        and not e["params"]["url"].startswith("file:")
    ]


def test_the_net_log_sees_what_a_page_fetches(tmp_path: pathlib.Path) -> None:
    # The check below must be able to fail: a page with one external image is caught.
    page = tmp_path / "external.html"
    page.write_text('<!DOCTYPE html><html><body><img src="https://assets.example.invalid/logo.png"></body></html>')
    _dom, requests = browse(page, tmp_path, "--dump-dom")
    assert requests == ["https://assets.example.invalid/logo.png"]


@pytest.mark.lab
def test_report_html_in_a_headless_browser_offline(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed")
    out = tmp_path / "reports"
    run = report(lab, tmp_path, "-e", "xu_report_fail_within_days=30", "-e", f"xu_report_dir={out}")
    assert run.rc == 2
    results = stats(run)["xu_report_results"]
    markup, requests = browse(out / "report.html", tmp_path, "--dump-dom")
    assert requests == []
    dom = Dom(markup)
    # Nothing the page could load from elsewhere, and no script at all.
    assert not [a for _tag, a in dom.elements for name in ("src", "href") if a.get(name, "").lower().startswith(("http:", "https:", "//"))]
    assert not dom.all("script")
    # The fleet table, a row per host, most urgent first, the problems highlighted by status.
    rows = [a for t, a in dom.elements if t == "tr" and "data-host" in a]
    assert [a["data-host"] for a in rows] == list(results)
    assert [a["class"] for a in rows] == ["row-expired", "row-expiring", "row-tls_off", "row-problems", "row-ok"]
    assert len(dom.all("li")) >= 4 and "This run fails" in dom.text
    # The timeline: one bar per bound certificate (xu04 serves plain HTTP), each with its expiry.
    assert len(dom.all("svg", id="timeline")) == 1
    bars = dom.all("g", **{"class": "cert"})
    assert [b["data-host"] for b in bars] == ["xu03", "xu02", "xu05", "xu01"]
    assert [b["data-thumbprint"] for b in bars] == [results[h]["thumbprint"] for h in ("xu03", "xu02", "xu05", "xu01")]
    assert len(dom.all("rect")) == 4
    text = "".join(dom.text)
    assert f"expired {results['xu03']['not_after']}" in text and f"{results['xu02']['not_after']} (9 days)" in text

    shot = tmp_path / "report.png"
    browse(out / "report.html", tmp_path, "--window-size=1400,1000", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


HOSTILE = '<script>document.title="owned"</script><img src=x onerror=alert(1)>'


def test_hostile_values_stay_text_in_the_browser(tmp_path: pathlib.Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    not_after = (now + datetime.timedelta(days=9)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cert = {"thumbprint": "AB" * 20, "subject": f"CN={HOSTILE}", "not_after": not_after, "days_left": 9, "expired": False}
    info = {"installed": True, "problems": [f"friendly name {HOSTILE}"],
            "web_server": {"tls": True, "protocol": "https_unrestricted", "certificate_thumbprint": "AB" * 20, "certificate": cert}}
    fleet = fleet_report({HOSTILE: info}, [HOSTILE], [HOSTILE], ReportOptions(fail_within_days=30), now=now)
    page = tmp_path / "report.html"
    page.write_text(fleet.to_html())
    markup, requests = browse(page, tmp_path, "--dump-dom")
    dom = Dom(markup)
    assert requests == []  # the injected <img src=x> would be a request
    assert not dom.all("script") and not dom.all("img")
    assert "<title>TLS report" in markup  # the injected script did not run
    text = "".join(dom.text)
    assert f"friendly name {HOSTILE}" in text and f"CN={HOSTILE}" in text
    assert [a["data-host"] for a in dom.all("tr") if "data-host" in a] == [HOSTILE]
