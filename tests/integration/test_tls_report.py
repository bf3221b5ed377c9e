"""The tls_report playbook against the lab: thresholds that fail the run, set_stats, --limit, the files, and report.html
in a real headless browser (Debian's chromium) with the network off."""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import json
import os
import pathlib
import select
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from typing import Any

import pytest
import yaml
from labtools import REPO, Lab, PlaybookRun

# The report's backend renders the hostile page below; the collection is importable from the checkout's link.
sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.report._tls_report import TABLE_HEADINGS as REPORT_HEADINGS
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.report._tls_report import ReportOptions, fleet_report

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
    # The counts first, then the hosts that fail the run, then one line a host, most urgent first.
    assert lines[0] == "TOTAL  5 hosts: 1 expired, 1 expiring, 1 tls_off, 1 problems, 1 ok"
    assert lines[1] == "FAILS  2 hosts: xu03, xu02"
    assert lines[2].startswith("HOST ") and "NOT AFTER" in lines[2]
    assert [line.split()[0] for line in lines[3:] if not line.startswith(" ")] == list(results)

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
    assert lines[:2] == ["TOTAL  2 hosts: 1 unreachable, 1 ok", "FAILS  1 host: xu99"]
    assert lines[3].startswith("xu99") and lines[4].startswith("  - could not be reached: ")
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
    # Nothing the page could load from elsewhere, and no script but its own (inline, allowed by its hash alone).
    assert not [a for _tag, a in dom.elements for name in ("src", "href") if a.get(name, "").lower().startswith(("http:", "https:", "//"))]
    assert dom.all("script") == [{}]
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
    assert dom.all("script") == [{}] and not dom.all("img")  # the page's own script, no injected one
    assert "<title>TLS report" in markup  # the injected script did not run
    text = "".join(dom.text)
    assert f"friendly name {HOSTILE}" in text and f"CN={HOSTILE}" in text
    assert [a["data-host"] for a in dom.all("tr") if "data-host" in a] == [HOSTILE]


# -- report.html sorted and filtered by a person, in a real browser ---------------------------------------


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: requests on its fd 3,
    answers and events on its fd 4, each a JSON message ended by a NUL), with the network off as above. Clicks and
    typing go through Chromium's input pipeline (Input.dispatchMouseEvent, Input.insertText), as a person's do."""

    def __init__(self, work: pathlib.Path) -> None:
        to_browser, self._writer = os.pipe()
        self._reader, from_browser = os.pipe()

        def descriptors() -> None:
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        self.net_log = work / f"net-cdp-{len(list(work.glob('net-*')))}.json"
        self._process = subprocess.Popen(
            [CHROMIUM, *OFFLINE, f"--user-data-dir={work / 'profile-cdp'}", f"--log-net-log={self.net_log}", "--remote-debugging-pipe",
             "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=descriptors, pass_fds=(3, 4),  # noqa: PLW1509 - no threads here
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self._session = ""

    def close(self) -> None:
        # Its answer may never come: the browser closes, writing its net log.
        with contextlib.suppress(OSError):
            os.write(self._writer, json.dumps({"id": self._next_id + 1, "method": "Browser.close"}).encode("utf-8") + b"\0")
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._writer)
        os.close(self._reader)

    def send(self, method: str, browser_level: bool = False, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self._session and not browser_level:
            message["sessionId"] = self._session
        os.write(self._writer, json.dumps(message).encode("utf-8") + b"\0")
        deadline = time.monotonic() + 60
        while True:
            while b"\0" not in self._buffer:
                ready, _writable, _errors = select.select([self._reader], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise AssertionError(f"Chromium did not answer {method}")
                chunk = os.read(self._reader, 1 << 16)
                if not chunk:
                    raise AssertionError(f"Chromium closed the pipe during {method}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._next_id:
                assert "error" not in answer, answer
                result: dict[str, Any] = answer["result"]
                return result

    def open(self, page: pathlib.Path) -> None:
        target = self.send("Target.createTarget", browser_level=True, url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", browser_level=True, targetId=target, flatten=True)["sessionId"]
        self.send("Page.enable")
        self.send("Page.navigate", url=page.as_uri())
        deadline = time.monotonic() + 60
        while self.evaluate("document.readyState") != "complete":
            assert time.monotonic() < deadline, "the page did not load"
            time.sleep(0.1)

    def evaluate(self, expression: str) -> Any:
        answer = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in answer, answer
        return answer["result"].get("value")

    def click(self, selector: str) -> None:
        """A left click in the middle of the element, as the mouse makes it."""
        box = self.evaluate(f"(function () {{ var e = document.querySelector({json.dumps(selector)}); e.scrollIntoView({{block: 'center'}});"
                            " var r = e.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; }())")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def type(self, selector: str, text: str) -> None:
        self.click(selector)
        self.send("Input.insertText", text=text)

    def state(self) -> dict[str, Any]:
        """The hosts of the table's visible rows and of the timeline's visible bars, in the order shown, and the sorting."""
        value: dict[str, Any] = self.evaluate("""(function () {
          var rows = Array.prototype.filter.call(document.querySelectorAll("#fleet tbody tr"), function (r) { return !r.hidden; });
          var bars = Array.prototype.filter.call(document.querySelectorAll("#timeline g.cert"), function (g) {
            return getComputedStyle(g).display !== "none"; });
          bars.sort(function (a, b) { return a.getBoundingClientRect().top - b.getBoundingClientRect().top; });
          return {rows: rows.map(function (r) { return r.getAttribute("data-host"); }),
                  bars: bars.map(function (g) { return g.getAttribute("data-host"); }),
                  sorted: Array.prototype.map.call(document.querySelectorAll("#fleet th"), function (h) {
                    return h.textContent + ":" + h.getAttribute("aria-sort"); }).filter(function (s) { return !/:none$/.test(s); }),
                  shown: document.getElementById("shown").textContent,
                  controls: !document.getElementById("controls").hidden};
        }())""")
        return value


def heading(title: str) -> str:
    return f"#fleet th:nth-child({[t for t, _kind in REPORT_HEADINGS].index(title) + 1}) button"


@pytest.mark.lab
def test_report_html_sorts_and_filters_in_a_headless_browser(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed")
    out = tmp_path / "reports"
    run = report(lab, tmp_path, "-e", "xu_report_fail_within_days=30", "-e", f"xu_report_dir={out}")
    assert run.rc == 2
    results = stats(run)["xu_report_results"]
    urgent = ["xu03", "xu02", "xu04", "xu05", "xu01"]
    assert list(results) == urgent
    browser = Browser(tmp_path)
    try:
        browser.open(out / "report.html")
        # The page's own script ran (its controls show): the policy allows it by its hash.
        first = browser.state()
        assert first == {"rows": urgent, "bars": ["xu03", "xu02", "xu05", "xu01"], "sorted": [], "shown": "all 5 hosts", "controls": True}

        # Days left: the fewest first, a host without a certificate last either way; again: the most first.
        browser.click(heading("Days left"))
        assert browser.state()["rows"] == ["xu03", "xu02", "xu05", "xu01", "xu04"]
        assert browser.state()["sorted"] == ["Days left:ascending"]
        browser.click(heading("Days left"))
        state = browser.state()
        assert state["rows"] == ["xu01", "xu05", "xu02", "xu03", "xu04"] and state["sorted"] == ["Days left:descending"]
        # The timeline keeps the table's order.
        assert state["bars"] == ["xu01", "xu05", "xu02", "xu03"]
        browser.click(heading("Host"))
        assert browser.state()["rows"] == ["xu01", "xu02", "xu03", "xu04", "xu05"]
        browser.click(heading("Status"))
        assert browser.state()["rows"] == urgent

        # A status: only its hosts, in the table and on the timeline.
        browser.click('#filter-status button[data-status="expiring"]')
        state = browser.state()
        assert (state["rows"], state["bars"], state["shown"]) == (["xu02"], ["xu02"], "1 of 5 hosts")
        browser.click('#filter-status button[data-status=""]')
        assert browser.state()["rows"] == urgent

        # Text: any of a row's words (a thumbprint here), typed as a person types it; a status narrows it further.
        browser.type("#filter-text", results["xu05"]["thumbprint"][:12].lower())
        state = browser.state()
        assert (state["rows"], state["bars"], state["shown"]) == (["xu05"], ["xu05"], "1 of 5 hosts")
        browser.click('#filter-status button[data-status="ok"]')
        assert browser.state()["rows"] == []
    finally:
        browser.close()
    # Nothing was fetched from the network by any of it.
    assert page_requests(json.loads(browser.net_log.read_text())) == []
