# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report of the tls_report playbook: its variables, each host's row, the table, the files. Private to this collection.

The playbook reads every server once with xu_tls_info; everything after that is decided
here: the variables typed once (extra vars and AWX survey answers arrive as strings), a
row per host of the group (``not_targeted`` outside ``--limit``, ``unreachable`` with the
error), the order by urgency, the hosts that fail the run and why, and the three files
(JSON, CSV and a self-contained HTML page) written on the controller.
"""

from __future__ import annotations

import base64
import csv
import datetime
import hashlib
import html
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._unreachable import unreachable_reason
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._options import resolve_path, user_base_dir
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.report._text_table import column_lines, note_lines, outside_limit_line
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._profiles import PROFILES

PRODUCTS = tuple(PROFILES)
DEFAULT_GROUP = "xu_servers"
# xu_tls_info's notes on a bound certificate's expiry (_tls_info.certificate_problems): xu_report_fail_within_days judges
# those (an expired certificate always fails, 0 days being the least), xu_report_fail_on_problems the other problems.
EXPIRY_NOTE = re.compile(r"^the .+ certificate [0-9A-Fa-f]+ (expires in -?[0-9]+ days\b|expired on )")
# The variables of the tls_report playbook.
REPORT_VARIABLES = ("xu_report_fail_within_days", "xu_report_fail_on_problems", "xu_report_product", "xu_report_dir", "xu_report_hosts")
# xu_tls_info's default expiry_warning_days: a certificate expiring sooner is "expiring" even when the run does not fail on it.
EXPIRING_DAYS = 30
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
TIMELINE_DAYS = 365
PROBLEM_INDENT = "  - "

# Status words, most urgent first: the table's order and the rows' colours follow this.
URGENCY = ("expired", "expiring", "unreachable", "unreadable", "tls_off", "problems", "ok", "not_targeted")
UNREAD = frozenset({"unreachable", "unreadable"})


class ReportOptionsError(ValueError):
    """A report variable of the wrong type or out of range; the message names the variable."""


# -- the variables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportOptions:
    """The report's variables with their documented types."""

    # By default a scheduled report fails on what needs a person: an expired certificate, and any problem (a certificate
    # missing from the store, TLS off, a closed gate...) but a certificate merely expiring soon, which the renewal handles.
    fail_within_days: int | None = 0
    fail_on_problems: bool = True
    product: str = "xtract_universal"
    dir: str = ""
    hosts: str = DEFAULT_GROUP

    @property
    def expiring_within_days(self) -> int:
        """Certificates expiring in fewer days than this are ``expiring`` (and a problem of xu_tls_info)."""
        return max(EXPIRING_DAYS, self.fail_within_days or 0)

    def to_result(self) -> dict[str, Any]:
        return {
            "fail_within_days": self.fail_within_days,
            "fail_on_problems": self.fail_on_problems,
            "product": self.product,
            "dir": self.dir,
            "hosts": self.hosts,
            "expiring_within_days": self.expiring_within_days,
        }


def _unset(value: Any) -> bool:
    # An AWX survey question left empty, or -e name= : the variable takes its default.
    return value is None or (isinstance(value, str) and not value.strip())


def _days(value: Any) -> int | None:
    if _unset(value):
        return ReportOptions.fail_within_days
    if isinstance(value, bool):
        raise ReportOptionsError(f"xu_report_fail_within_days must be a whole number of days (0 or more), not {value!r}")
    try:
        days = int(value.strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ReportOptionsError(f"xu_report_fail_within_days must be a whole number of days (0 or more), not {value!r}") from None
    if days < 0 or (isinstance(value, float) and value != days):
        raise ReportOptionsError(f"xu_report_fail_within_days must be a whole number of days (0 or more), not {value!r}")
    return days


def _flag(value: Any) -> bool:
    if _unset(value):
        return ReportOptions.fail_on_problems
    try:
        return bool(boolean(value.strip() if isinstance(value, str) else value, strict=True))
    except TypeError:
        raise ReportOptionsError(f"xu_report_fail_on_problems must be true or false, not {value!r}") from None


def _choice(value: Any) -> str:
    if _unset(value):
        return PRODUCTS[0]
    product = str(value).strip()
    if product not in PRODUCTS:
        raise ReportOptionsError(f"xu_report_product must be one of {', '.join(PRODUCTS)}, not {value!r}")
    return product


def _text(name: str, value: Any, default: str) -> str:
    if _unset(value):
        return default
    if not isinstance(value, str):
        raise ReportOptionsError(f"{name} must be a string, not {value!r}")
    return value.strip()


def report_options(values: Mapping[str, Any], playbook_dir: Any = None) -> ReportOptions:
    """The report's variables (``xu_report_*``), typed; ReportOptionsError names every wrong one.

    A variable that is missing, None or empty takes its default. ``xu_report_dir`` comes out
    absolute (``~`` expanded, a relative path taken from the user's playbook directory, as the
    renew role's paths: ``_renew_options.user_base_dir``).
    """
    unknown = sorted(set(values) - set(REPORT_VARIABLES))
    errors = [f"not variables of the report: {', '.join(unknown)}"] if unknown else []
    typed: dict[str, Any] = {}
    converters: tuple[tuple[str, Callable[[Any], Any]], ...] = (
        ("fail_within_days", _days),
        ("fail_on_problems", _flag),
        ("product", _choice),
        ("dir", lambda value: _text("xu_report_dir", value, "")),
        ("hosts", lambda value: _text("xu_report_hosts", value, DEFAULT_GROUP)),
    )
    for name, convert in converters:
        try:
            typed[name] = convert(values.get(f"xu_report_{name}"))
        except ReportOptionsError as e:
            errors.append(str(e))
    if errors:
        raise ReportOptionsError("; ".join(errors))
    typed["dir"] = resolve_path(typed["dir"], user_base_dir(playbook_dir)) if typed["dir"] else ""
    return ReportOptions(**typed)


# -- a row per host ------------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _one_line(value: Any) -> str:
    return " ".join(_str(value).split())


@dataclass(frozen=True)
class BoundCertificate:
    """A certificate the product is configured with, as xu_tls_info described it."""

    role: str
    thumbprint: str
    subject: str
    not_after: str
    days_left: int | None
    expired: bool

    def expires_within(self, days: int) -> bool:
        return self.expired or (self.days_left is not None and self.days_left < days)

    def moment(self) -> datetime.datetime | None:
        try:
            return datetime.datetime.strptime(self.not_after, ISO_FORMAT).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            return None

    def to_result(self) -> dict[str, Any]:
        return {
            "role": self.role, "thumbprint": self.thumbprint, "subject": self.subject,
            "not_after": self.not_after or None, "days_left": self.days_left, "expired": self.expired,
        }


def bound_certificates(info: Mapping[str, Any]) -> list[BoundCertificate]:
    """The web server's and the configuration server's certificates; one entry when both use the same."""
    found: dict[str, BoundCertificate] = {}
    roles = (("web server", _dict(info.get("web_server"))), ("configuration server", _dict(info.get("config_server"))))
    for role, server in roles:
        thumbprint = _str(server.get("certificate_thumbprint")).strip().upper()
        if not server.get("tls") or not thumbprint:
            continue
        if thumbprint in found:
            found[thumbprint] = replace(found[thumbprint], role=f"{found[thumbprint].role} and {role}")
            continue
        certificate = _dict(server.get("certificate"))
        found[thumbprint] = BoundCertificate(
            role, thumbprint, _one_line(certificate.get("subject")), _str(certificate.get("not_after")),
            _int(certificate.get("days_left")), bool(certificate.get("expired")),
        )
    return list(found.values())


@dataclass(frozen=True)
class HostReport:
    """One row of the report."""

    host: str
    status: str
    protocol: str = ""
    problems: tuple[str, ...] = ()
    certificates: tuple[BoundCertificate, ...] = ()
    error: str = ""
    # xu_tls_info's transport: what protects the connection to the host (empty when it was not read).
    transport: dict[str, Any] = field(default_factory=dict)

    def transport_note(self) -> str | None:
        """A line for a connection that protects nothing: a PFX renewal is refused over it (or sent by the play's leave)."""
        if not self.transport or self.transport.get("protected") is not False:
            return None
        settings = _one_line(self.transport.get("summary")) or _one_line(self.transport.get("plugin"))
        if self.transport.get("unprotected_allowed"):
            return f"the connection ({settings}) is not encrypted, and xu_allow_unprotected_transport lets a PFX and its password cross it"
        return f"the connection ({settings}) is not encrypted: a PFX and its password are not sent over it (xu_allow_unprotected_transport)"

    @property
    def soonest(self) -> BoundCertificate | None:
        """The bound certificate that expires first: the row shows it."""
        dated = [c for c in self.certificates if c.days_left is not None]
        if dated:
            return min(dated, key=lambda c: (not c.expired, c.days_left))
        return self.certificates[0] if self.certificates else None

    def urgency(self) -> tuple[int, int, int, str]:
        """Expired first, then expiring, the hosts that could not be read, problems, healthy, not targeted; fewest days first."""
        soonest = self.soonest
        days = soonest.days_left if soonest and soonest.days_left is not None else None
        return (URGENCY.index(self.status), days is None, days or 0, self.host)

    def to_result(self) -> dict[str, Any]:
        """What set_stats and report.json hold for the host."""
        soonest = self.soonest
        return {
            "status": self.status,
            "protocol": self.protocol or None,
            "thumbprint": soonest.thumbprint if soonest else None,
            "not_after": (soonest.not_after or None) if soonest else None,
            "days_left": soonest.days_left if soonest else None,
            "problems": list(self.problems),
            "error": self.error or None,
            "certificates": [c.to_result() for c in self.certificates],
            "transport": dict(self.transport) or None,
        }


def host_status(info: Mapping[str, Any], certificates: Sequence[BoundCertificate], problems: Sequence[str], expiring_days: int) -> str:
    web = _dict(info.get("web_server"))
    checks = (
        (any(c.expired for c in certificates), "expired"),
        (any(c.expires_within(expiring_days) for c in certificates), "expiring"),
        (bool(web) and web.get("tls") is False, "tls_off"),
        (bool(problems), "problems"),
    )
    return next((status for matched, status in checks if matched), "ok")


def host_report(host: str, info: Any, targeted: bool, expiring_days: int) -> HostReport:
    """The row of one host from its registered xu_tls_info result (a mapping, or anything else when there is none)."""
    if not targeted:
        return HostReport(host, "not_targeted")
    result = _dict(info)
    if not result or result.get("unreachable") or result.get("failed") or "installed" not in result:
        message = _one_line(result.get("msg")) or "no result: the run lost this host before it could report"
        status = "unreachable" if result.get("unreachable") or not result else "unreadable"
        problem = unreachable_reason(message) if status == "unreachable" else f"could not be read: {message}"
        return HostReport(host, status, error=message, problems=(problem,))
    problems = tuple(_one_line(p) for p in result.get("problems") or [] if _one_line(p))
    certificates = bound_certificates(result)
    web = _dict(result.get("web_server"))
    status = host_status(result, certificates, problems, expiring_days)
    return HostReport(host, status, _str(web.get("protocol")), problems, tuple(certificates), transport=_dict(result.get("transport")))


# -- the fleet -----------------------------------------------------------------------------------


def fleet_rows(infos: Mapping[str, Any], group_hosts: Iterable[str], targeted: Iterable[str], expiring_days: int) -> list[HostReport]:
    """A row for every host of the group and every host the run targeted, most urgent first."""
    targeted_set = set(targeted)
    hosts = sorted(set(group_hosts) | targeted_set)
    rows = [host_report(host, infos.get(host), host in targeted_set, expiring_days) for host in hosts]
    return sorted(rows, key=HostReport.urgency)


def fleet_totals(rows: Sequence[HostReport]) -> dict[str, int]:
    """The counts set_stats hands on: hosts, ok, problems (read, with any problem), expiring, expired, unreachable, ..."""
    def count(*statuses: str) -> int:
        return sum(1 for row in rows if row.status in statuses)

    return {
        "hosts": len(rows),
        "ok": count("ok"),
        "problems": count("expired", "expiring", "tls_off", "problems"),
        "expiring": count("expiring"),
        "expired": count("expired"),
        "tls_off": count("tls_off"),
        "unreachable": count(*UNREAD),
        "not_targeted": count("not_targeted"),
    }


def run_failure(row: HostReport, options: ReportOptions) -> str | None:
    """Why this host fails the run, or None. A host that could not be read always fails: nothing is known of it."""
    if row.status in UNREAD:
        return f"{row.problems[0][0].upper()}{row.problems[0][1:]}"
    reasons = []
    if options.fail_within_days is not None:
        limit = options.fail_within_days
        for c in row.certificates:
            if c.expires_within(limit):
                when = f"expired on {c.not_after}" if c.expired else f"expires in {c.days_left} days ({c.not_after})"
                reasons.append(f"the {c.role} certificate {c.thumbprint} {when}: within xu_report_fail_within_days ({limit})")
    # A certificate's expiry is xu_report_fail_within_days' to judge (above), not a problem that fails the run again.
    problems = [problem for problem in row.problems if not EXPIRY_NOTE.search(problem)]
    if options.fail_on_problems and problems:
        reasons.append(f"{len(problems)} problem(s) and xu_report_fail_on_problems is true: {'; '.join(problems)}")
    return "; ".join(reasons) or None


HEADINGS = ("HOST", "STATUS", "PROTOCOL", "THUMBPRINT", "NOT AFTER", "DAYS LEFT", "PROBLEMS")
RIGHT_ALIGNED = frozenset({"DAYS LEFT", "PROBLEMS"})


def _cells(row: HostReport) -> tuple[str, ...]:
    soonest = row.soonest
    days = soonest.days_left if soonest else None
    return (
        row.host,
        row.status,
        row.protocol or "-",
        soonest.thumbprint if soonest else "-",
        (soonest.not_after or "-") if soonest else "-",
        "-" if days is None else str(days),
        str(len(row.problems)) if row.status != "not_targeted" else "-",
    )


def status_counts(rows: Sequence[HostReport]) -> dict[str, int]:
    """How many hosts have each status, most urgent first, leaving out the statuses no host has."""
    counts = {status: sum(1 for row in rows if row.status == status) for status in URGENCY}
    return {status: count for status, count in counts.items() if count}


# A FAILS line names at most this many hosts; the table lists them all (they are among its first), and each fails on its
# own task, saying why.
FAILS_NAMED = 50


def table_lines(rows: Sequence[HostReport], failures: Mapping[str, str]) -> list[str]:
    """The table as a list of lines (one list item a line reads well under every callback, AWX's output included): the
    counts first, the hosts outside --limit as one line with their count (the files keep a row each), the hosts that
    fail the run, then one line a host, most urgent first, its problems below it; a note on the connections last, once
    for all the hosts it applies to. A fleet of 1000 stays readable."""
    shown = [row for row in rows if row.status != "not_targeted"]
    lines = [f"TOTAL  {len(rows)} hosts: " + ", ".join(f"{count} {status}" for status, count in status_counts(rows).items())]
    if len(shown) < len(rows):
        lines.append(outside_limit_line(len(rows) - len(shown)))
    if failures:
        named = list(failures)[:FAILS_NAMED]
        more = f" and {len(failures) - len(named)} more" if len(failures) > len(named) else ""
        failing = "1 host" if len(failures) == 1 else f"{len(failures)} hosts"
        lines += note_lines(f"FAILS  {failing}: {', '.join(named)}{more}", "", "       ")
    header, *lines_of_rows = column_lines(HEADINGS, [_cells(row) for row in shown], RIGHT_ALIGNED)
    lines.append(header)
    notes: dict[str, list[str]] = {}
    for row, line in zip(shown, lines_of_rows, strict=True):
        lines.append(line)
        for problem in row.problems:
            lines += note_lines(problem, PROBLEM_INDENT, " " * len(PROBLEM_INDENT))
        note = row.transport_note()
        if note is not None:
            notes.setdefault(note, []).append(row.host)
    read = sum(1 for row in shown if row.transport)
    for text, hosts in notes.items():
        if len(hosts) == read and read > 1:
            who = f"all {read} hosts read"
        elif len(hosts) > FAILS_NAMED:
            who = f"{len(hosts)} hosts ({', '.join(hosts[:FAILS_NAMED])} and {len(hosts) - FAILS_NAMED} more)"
        else:
            who = ", ".join(hosts)
        lines += note_lines(f"NOTE   {who}: {text}", "", "       ")
    return lines


@dataclass(frozen=True)
class FleetReport:
    """Everything the playbook prints, hands to AWX, writes and fails on."""

    rows: tuple[HostReport, ...]
    options: ReportOptions
    generated_at: datetime.datetime
    group: str = DEFAULT_GROUP
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, int]:
        return fleet_totals(self.rows)

    def stats(self) -> dict[str, Any]:
        """The set_stats data, which report.json holds too."""
        return {
            "xu_report_generated_at": self.generated_at.strftime(ISO_FORMAT),
            "xu_report_totals": self.totals,
            "xu_report_results": {row.host: row.to_result() for row in self.rows},
            "xu_report_failures": dict(self.failures),
        }

    def lines(self) -> list[str]:
        return table_lines(self.rows, self.failures)

    def to_json(self) -> str:
        return json.dumps(self.stats(), indent=2) + "\n"

    def to_csv(self) -> str:
        return fleet_csv(self.rows)

    def to_html(self) -> str:
        return fleet_html(self)

    def files(self) -> dict[str, str]:
        """The files xu_report_dir receives, by name."""
        return {"report.json": self.to_json(), "report.csv": self.to_csv(), "report.html": self.to_html()}


def fleet_report(
    infos: Mapping[str, Any],
    group_hosts: Sequence[str],
    targeted: Sequence[str],
    options: ReportOptions,
    *,
    now: datetime.datetime,
    group: str = DEFAULT_GROUP,
) -> FleetReport:
    rows = tuple(fleet_rows(infos, group_hosts, targeted, options.expiring_within_days))
    failures = {row.host: reason for row in rows if (reason := run_failure(row, options)) is not None}
    return FleetReport(rows, options, now, group, failures)


# -- CSV -----------------------------------------------------------------------------------------

CSV_HEADINGS = ("host", "status", "protocol", "thumbprint", "subject", "not_after", "days_left", "problems", "error")
# A cell a spreadsheet would take for a formula (OWASP "CSV injection"): the leading quote makes it text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def fleet_csv(rows: Sequence[HostReport]) -> str:
    """One line per host, in the table's order, with a header; problems joined with ``; ``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADINGS)
    for row in rows:
        soonest = row.soonest
        days = soonest.days_left if soonest else None
        writer.writerow([
            csv_text(row.host), row.status, row.protocol,
            soonest.thumbprint if soonest else "", csv_text(soonest.subject) if soonest else "",
            soonest.not_after if soonest else "", "" if days is None else days,
            csv_text("; ".join(row.problems)), csv_text(row.error),
        ])
    return out.getvalue()


def escape(value: Any) -> str:
    """Text for HTML (element content and quoted attributes); braces too, so no template engine ever evaluates it."""
    return html.escape(_str(value), quote=True).replace("{", "&#123;").replace("}", "&#125;")


# -- HTML: one self-contained page, readable offline -------------------------------------------

# The table sorts and filters by the page's own script: inline, allowed by its hash, and nothing else may run; nothing
# may be loaded from anywhere. Without scripts the page shows everything in the report's order.
SCRIPT = """
"use strict";
(function () {
  var table = document.getElementById("fleet"), body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var svg = document.getElementById("timeline");
  var top = Number(svg.getAttribute("data-top")), step = Number(svg.getAttribute("data-row-height"));
  var text = document.getElementById("filter-text"), shown = document.getElementById("shown");
  var statuses = Array.prototype.slice.call(document.querySelectorAll("#filter-status button")), wanted = "";
  var bars = {};
  Array.prototype.forEach.call(svg.querySelectorAll("g.cert"), function (bar) {
    var host = bar.getAttribute("data-host");
    (bars[host] = bars[host] || []).push(bar);
  });
  function key(row, column, numeric) {
    var cell = row.cells[column], value = cell.getAttribute("data-sort");
    if (value === null) { value = cell.textContent.trim(); }
    if (value === "" || value === "-") { return null; }
    return numeric ? Number(value) : value;
  }
  function sortBy(column, descending) {
    var numeric = heads[column].getAttribute("data-type") === "number";
    rows.sort(function (a, b) {
      var x = key(a, column, numeric), y = key(b, column, numeric), order = 0;
      if (x === null || y === null) { order = x === y ? 0 : (x === null ? 1 : -1); }
      else {
        order = numeric ? x - y : String(x).localeCompare(String(y), undefined, {numeric: true, sensitivity: "base"});
        if (descending) { order = -order; }
      }
      return order || Number(a.getAttribute("data-order")) - Number(b.getAttribute("data-order"));
    });
    heads.forEach(function (head, index) {
      head.setAttribute("aria-sort", index === column ? (descending ? "descending" : "ascending") : "none");
    });
    rows.forEach(function (row) { body.appendChild(row); });
    layout();
  }
  function layout() {
    var words = text.value.trim().toLowerCase(), count = 0, line = 0;
    rows.forEach(function (row) {
      var visible = (!wanted || row.getAttribute("data-status") === wanted) &&
        (!words || row.textContent.toLowerCase().indexOf(words) !== -1);
      row.hidden = !visible;
      count += visible ? 1 : 0;
      (bars[row.getAttribute("data-host")] || []).forEach(function (bar) {
        bar.style.display = visible ? "" : "none";
        if (visible) { bar.setAttribute("transform", "translate(0," + (top + step * line++) + ")"); }
      });
    });
    var height = top + step * Math.max(line, 1) + 10;
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", "0 0 " + svg.getAttribute("width") + " " + height);
    Array.prototype.forEach.call(svg.querySelectorAll("line"), function (mark) { mark.setAttribute("y2", height - 10); });
    shown.textContent = count === rows.length ? "all " + rows.length + " hosts" : count + " of " + rows.length + " hosts";
  }
  heads.forEach(function (head, column) {
    head.querySelector("button").addEventListener("click", function () {
      sortBy(column, head.getAttribute("aria-sort") === "ascending");
    });
  });
  statuses.forEach(function (button) {
    button.addEventListener("click", function () {
      wanted = button.getAttribute("data-status");
      statuses.forEach(function (other) { other.setAttribute("aria-pressed", String(other === button)); });
      layout();
    });
  });
  text.addEventListener("input", layout);
  document.getElementById("controls").hidden = false;
  layout();
}());
""".strip()
SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
CONTENT_SECURITY_POLICY = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{SCRIPT_HASH}'"
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1b1b1b; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #555; margin: 0 0 16px; }
.alert { border: 2px solid #b71c1c; background: #fdecea; padding: 8px 14px; border-radius: 4px; }
.alert h2 { margin: 4px 0; color: #b71c1c; } .alert summary { cursor: pointer; }
.totals { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 8px; }
.totals li { padding: 4px 10px; border-radius: 12px; background: #eee; }
.timeline { max-height: 45vh; overflow: auto; border: 1px solid #ddd; }
#controls { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; margin: 8px 0; }
#controls[hidden] { display: none; } #controls input { min-width: 22em; }
#filter-status button { font: inherit; border: 1px solid #bbb; background: #fff; border-radius: 12px; padding: 2px 10px; cursor: pointer; }
#filter-status button[aria-pressed="true"] { background: #1b1b1b; color: #fff; border-color: #1b1b1b; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 5px 8px; text-align: left; vertical-align: top; }
thead th { background: #f3f3f3; position: sticky; top: 0; }
th button { font: inherit; font-weight: 600; border: 0; background: none; padding: 0; cursor: pointer; color: inherit; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; } th[aria-sort="descending"] button::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono { font-family: ui-monospace, monospace; font-size: 12px; overflow-wrap: anywhere; }
td.date { font-family: ui-monospace, monospace; font-size: 12px; white-space: nowrap; }
td.host { font-weight: 600; overflow-wrap: anywhere; min-width: 4em; }
ul.problem-list { margin: 0; padding-left: 18px; color: #8e0000; }
.status { font-weight: 600; padding: 1px 6px; border-radius: 3px; white-space: nowrap; }
tr.row-expired { background: #fdecea; } tr.row-expiring { background: #fff3e0; }
tr.row-unreachable, tr.row-unreadable { background: #f3e5f5; } tr.row-tls_off, tr.row-problems { background: #fffde7; }
tr.row-not_targeted { color: #888; }
.s-expired { background: #c62828; color: #fff; } .s-expiring { background: #ef6c00; color: #fff; }
.s-unreachable, .s-unreadable { background: #6a1b9a; color: #fff; } .s-tls_off, .s-problems { background: #f9a825; }
.s-ok { background: #2e7d32; color: #fff; } .s-not_targeted { background: #ddd; }
svg#timeline { display: block; }
svg text { font: 12px system-ui, sans-serif; fill: #1b1b1b; }
svg .grid { stroke: #ddd; } svg .now { stroke: #1b1b1b; } svg .limit { stroke: #c62828; stroke-dasharray: 4 3; }
svg .b-expired { fill: #c62828; } svg .b-expiring { fill: #ef6c00; } svg .b-problems { fill: #f9a825; } svg .b-ok { fill: #66bb6a; }
""".strip()

# Each column's heading and how the script sorts it.
TABLE_HEADINGS = (("Host", "text"), ("Status", "number"), ("Protocol", "text"), ("Not after", "text"), ("Days left", "number"),
                  ("Thumbprint", "text"), ("Subject", "text"), ("Problems", "number"))
ROW_HEIGHT = 24
TIMELINE_TOP = 34
PLOT_WIDTH = 720
CHAR_WIDTH = 7  # px per character of a 12px label, roughly: the label column fits the longest host name
# More hosts failing the run than this are listed folded.
FAILURES_OPEN = 10


def _cell(value: Any, css: str = "", sort: Any = None) -> str:
    attributes = (f' class="{css}"' if css else "") + ("" if sort is None else f' data-sort="{escape(sort)}"')
    return f"<td{attributes}>{escape(value)}</td>"


def html_row(row: HostReport, order: int) -> str:
    """The row of one host; ``order`` is its place in the report's order, to which the page's sorting returns for ties."""
    soonest = row.soonest
    days = soonest.days_left if soonest else None
    problems = "".join(f"<li>{escape(p)}</li>" for p in row.problems)
    return "".join((
        f'<tr class="row-{escape(row.status)}" data-host="{escape(row.host)}" data-status="{escape(row.status)}" data-order="{order}">',
        _cell(row.host, "host"),
        f'<td data-sort="{URGENCY.index(row.status)}"><span class="status s-{escape(row.status)}">{escape(row.status)}</span></td>',
        _cell(row.protocol or "-"),
        _cell((soonest.not_after or "-") if soonest else "-", "date"),
        _cell("-" if days is None else days, "num", "" if days is None else days),
        _cell(soonest.thumbprint if soonest else "-", "mono"),
        _cell(soonest.subject if soonest else "-"),
        f'<td data-sort="{len(row.problems)}"><ul class="problem-list">{problems}</ul></td>' if problems else '<td data-sort="0"></td>',
        "</tr>",
    ))


def _bar_class(certificate: BoundCertificate, row: HostReport, expiring_days: int) -> str:
    if certificate.expired:
        return "expired"
    if certificate.expires_within(expiring_days):
        return "expiring"
    return "problems" if row.problems else "ok"


def _months(start: datetime.datetime, end: datetime.datetime) -> list[datetime.datetime]:
    """The first day of every month after ``start`` up to ``end``: the timeline's grid."""
    months: list[datetime.datetime] = []
    year, month = start.year, start.month
    while True:
        month += 1
        if month > 12:
            year, month = year + 1, 1
        moment = datetime.datetime(year, month, 1, tzinfo=datetime.timezone.utc)
        if moment > end:
            return months
        months.append(moment)


@dataclass(frozen=True)
class Timeline:
    """Where things go on the expiry timeline: from ``now`` (left) to a year ahead (right)."""

    now: datetime.datetime
    left: int

    @property
    def right(self) -> int:
        return self.left + PLOT_WIDTH

    def x(self, moment: datetime.datetime) -> float:
        days = (moment - self.now).total_seconds() / 86400
        return self.left + PLOT_WIDTH * min(max(days, 0.0), TIMELINE_DAYS) / TIMELINE_DAYS

    def x_days(self, days: int) -> float:
        return self.x(self.now + datetime.timedelta(days=days))


def _timeline_bar(timeline: Timeline, certificate: BoundCertificate, css: str) -> list[str]:
    """The bar's rectangle and its date, drawn from the top of its line (its group is moved to the line)."""
    moment = certificate.moment()
    end = timeline.x(moment) if moment else timeline.left
    if certificate.expired:
        label = f"expired {certificate.not_after}"
    elif moment is None:
        label = "expiry unknown"
    else:
        beyond = " (beyond the year)" if end >= timeline.right else ""
        label = f"{certificate.not_after} ({certificate.days_left} days){beyond}"
    width = max(end - timeline.left, 3.0)
    # The date goes right of the bar while it fits, else inside its end.
    text_x, anchor = (end + 6, "start") if end + 6 + CHAR_WIDTH * len(label) < timeline.right + 40 else (end - 6, "end")
    return [
        f'<rect class="b-{css}" x="{timeline.left}" y="4" width="{width:.1f}" height="{ROW_HEIGHT - 8}" rx="3">'
        f"<title>{escape(certificate.thumbprint)} {escape(certificate.subject)}</title></rect>",
        f'<text x="{text_x:.1f}" y="16" text-anchor="{anchor}">{escape(label)}</text>',
    ]


def timeline_svg(report: FleetReport) -> str:
    """Every bound certificate on a line, a bar from today to its expiry over the next year (inline SVG), in the
    report's order; the page's script keeps the lines in the table's order and shows only the hosts it shows."""
    entries = [(row, c) for row in report.rows for c in row.certificates]
    labels = [f"{row.host} · {c.role}" for row, c in entries]
    timeline = Timeline(report.generated_at, max([160, *(CHAR_WIDTH * len(label) + 16 for label in labels)]))
    height = TIMELINE_TOP + ROW_HEIGHT * max(len(entries), 1) + 10
    width = timeline.right + 40
    parts = [
        f'<svg id="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" data-top="{TIMELINE_TOP}"'
        f' data-row-height="{ROW_HEIGHT}" role="img" aria-label="Certificate expiry over the next year">',
    ]
    bottom = height - 10
    for month in _months(report.generated_at, report.generated_at + datetime.timedelta(days=TIMELINE_DAYS)):
        x = timeline.x(month)
        name = month.strftime("%b %Y" if month.month == 1 else "%b")
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{TIMELINE_TOP - 6}" x2="{x:.1f}" y2="{bottom}"/>')
        if x - timeline.left > 3 * CHAR_WIDTH:  # else it would cover "today"
            parts.append(f'<text x="{x:.1f}" y="{TIMELINE_TOP - 12}" text-anchor="middle">{escape(name)}</text>')
    parts.append(f'<line class="now" x1="{timeline.left}" y1="{TIMELINE_TOP - 24}" x2="{timeline.left}" y2="{bottom}"/>')
    parts.append(f'<text x="{timeline.left}" y="{TIMELINE_TOP - 12}" text-anchor="middle">today</text>')
    limit = report.options.fail_within_days
    if limit:
        x = timeline.x_days(limit)
        parts.append(f'<line class="limit" x1="{x:.1f}" y1="{TIMELINE_TOP - 6}" x2="{x:.1f}" y2="{bottom}"><title>'
                     f"xu_report_fail_within_days: {limit}</title></line>")
    for index, ((row, certificate), label) in enumerate(zip(entries, labels, strict=True)):
        css = _bar_class(certificate, row, report.options.expiring_within_days)
        parts.append(f'<g class="cert" data-host="{escape(row.host)}" data-thumbprint="{escape(certificate.thumbprint)}"'
                     f' transform="translate(0,{TIMELINE_TOP + index * ROW_HEIGHT})">')
        parts.append(f'<text x="8" y="16">{escape(label)}</text>')
        parts += _timeline_bar(timeline, certificate, css)
        parts.append("</g>")
    if not entries:
        parts.append(f'<text x="8" y="{TIMELINE_TOP + 16}">no certificate is bound on any server that was read</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _failures_section(failures: Mapping[str, str]) -> str:
    if not failures:
        return ""
    items = "".join(f"<li><b>{escape(host)}</b>: {escape(reason)}</li>" for host, reason in failures.items())
    failing = "1 host fails" if len(failures) == 1 else f"{len(failures)} hosts fail"
    folded = " open" if len(failures) <= FAILURES_OPEN else ""
    return (f'<section class="alert" id="failures"><h2>This run fails</h2>'
            f"<details{folded}><summary>{failing} the run</summary><ul>{items}</ul></details></section>")


def fleet_html(report: FleetReport) -> str:
    """report.html: the counts, the hosts that fail the run, the expiry timeline, and the fleet table, which the page's
    own script sorts (by any column) and filters (by status, by any text of a row); every value escaped."""
    generated = report.generated_at.strftime(ISO_FORMAT)
    product = PROFILES[report.options.product].title
    totals = "".join(f'<li class="t-{escape(name)}">{count} {escape(name.replace("_", " "))}</li>' for name, count in report.totals.items())
    unbound = [row for row in report.rows if not row.certificates and row.status != "not_targeted"]
    note = ""
    if unbound:
        names = ", ".join(f"{escape(row.host)} ({escape(row.status)})" for row in unbound)
        note = f'<p class="meta">No certificate to show: {names}.</p>'
    buttons = [("", f"every status ({len(report.rows)})", "true")]
    buttons += [(status, f"{status} ({count})", "false") for status, count in status_counts(report.rows).items()]
    statuses = "".join(f'<button type="button" data-status="{escape(status)}" aria-pressed="{pressed}">{escape(label)}</button>'
                       for status, label, pressed in buttons)
    headings = "".join(f'<th data-type="{kind}" aria-sort="none"><button type="button">{escape(title)}</button></th>'
                       for title, kind in TABLE_HEADINGS)
    body = "\n".join(html_row(row, order) for order, row in enumerate(report.rows))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>TLS report {escape(report.group)} {escape(generated)}</title>
<style>
{STYLE}
</style>
</head>
<body>
<h1>TLS certificates of the {escape(product)} servers</h1>
<p class="meta">Group {escape(report.group)}, read {escape(generated)}.</p>
<ul class="totals">{totals}</ul>
{_failures_section(report.failures)}
<h2>Expiry over the next year</h2>
<div class="timeline">
{timeline_svg(report)}
</div>
{note}
<h2>Servers, most urgent first</h2>
<div id="controls" hidden>
<span id="filter-status" role="group" aria-label="Show the hosts of a status">{statuses}</span>
<label>Hosts whose row contains <input id="filter-text" type="search" placeholder="a name, thumbprint, subject, problem"></label>
<span id="shown" aria-live="polite"></span>
</div>
<table id="fleet">
<thead><tr>{headings}</tr></thead>
<tbody>
{body}
</tbody>
</table>
<script>{SCRIPT}</script>
</body>
</html>
"""
