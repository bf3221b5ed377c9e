"""Static checks of the remote agent and its bootstrap (plugins/plugin_utils/agent/).

No PowerShell can run here, so the scripts are held to what can be checked offline:

* both parse without a single ERROR or MISSING node under tree-sitter-powershell;
* the first lines are the markers, and the bootstrap is the one in docs/agent-protocol.md;
* the agent's operations, the arguments each one reads and the result keys it writes
  are those of the protocol's primitives table, and its operations are the lab's;
* nothing in the agent needs PowerShell 7, builds code from text, or writes to stdout
  other than the one answer;
* no cmdlet is ever given stdin, the PFX or its password (module logging records what
  cmdlets are given): the bootstrap parses stdin with .NET, the agent hands secrets to
  .NET methods only and reads the request as the dictionaries .NET's parser makes.

How the operation names are found: the agent keeps every primitive in ONE hashtable
literal assigned to ``$primitives``::

    $primitives = @{
        'discover' = { param($a) ... }
        'cert_list' = { param($a) ... }
    }

``agent_op_table()`` parses the script with tree-sitter, finds that assignment and
returns its entries as {op name: source text of the entry's script block}, in source
order; ``agent_op_names()`` returns just the names. Hashtables nested inside the
script blocks are not entries of the table and are not returned.
"""

from __future__ import annotations

import base64
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_powershell

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import AgentClient, without_comment_lines

ROOT = Path(__file__).resolve().parents[3]
AGENT_DIR = ROOT / "plugins" / "plugin_utils" / "agent"
AGENT = AGENT_DIR / "xu_agent.ps1"
BOOTSTRAP = AGENT_DIR / "bootstrap.ps1"
PROTOCOL_DOC = ROOT / "docs" / "agent-protocol.md"
LAB_DIR = ROOT / "tests" / "lab"
# What a cmdlet must never be given (module logging, event 4103, records every cmdlet's parameters and input).
SECRET_PATTERNS = (r"\.password\b", r"\bpfx_b64\b", r"\$secret\b", r"\$pfxPasswords?\b")

AGENT_MARKER = "# xtractuniversal.tls agent 1"
BOOTSTRAP_MARKER = "# xtractuniversal.tls bootstrap 1"

_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


# --------------------------------------------------------------------------- helpers


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def parse(text: str) -> tree_sitter.Tree:
    return _PARSER.parse(text.encode("utf-8"))


def walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def node_text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode("utf-8")


def parse_problems(text: str) -> list[str]:
    """Every ERROR and MISSING node of the parse, as 'line N: KIND <source>'."""
    problems = []
    for node in walk(parse(text).root_node):
        if node.is_error or node.is_missing:
            kind = "MISSING" if node.is_missing else "ERROR"
            problems.append(f"line {node.start_point[0] + 1}: {kind} {node_text(node)[:60]!r}")
    return problems


def code_only(text: str) -> str:
    """The script with comments and string literals blanked out (line numbers kept)."""
    data = bytearray(text.encode("utf-8"))
    for node in walk(parse(text).root_node):
        if node.type in ("comment", "string_literal"):
            for i in range(node.start_byte, node.end_byte):
                if data[i] not in b"\r\n":
                    data[i] = 0x20
    return data.decode("utf-8")


def without_comments(text: str) -> str:
    data = bytearray(text.encode("utf-8"))
    for node in walk(parse(text).root_node):
        if node.type == "comment":
            for i in range(node.start_byte, node.end_byte):
                data[i] = 0x20
    return data.decode("utf-8")


def _first_descendant(node: tree_sitter.Node, node_type: str) -> tree_sitter.Node | None:
    for child in walk(node):
        if child.type == node_type:
            return child
    return None


def command_nodes(text: str) -> list[tree_sitter.Node]:
    """Every command of the script: a cmdlet, function or native program by name, or ``&`` of a script block."""
    return [node for node in walk(parse(text).root_node) if node.type == "command"]


def named_commands(text: str) -> list[str]:
    """The source of every command called by name (cmdlets, functions, programs), with its arguments."""
    return [node_text(node) for node in command_nodes(text) if node.children and node.children[0].type == "command_name"]


def cmdlet_inputs(text: str) -> list[tuple[int, str]]:
    """(line, source) of everything a command is given: each command with its arguments, each pipeline that pipes into one."""
    found = []
    for node in walk(parse(text).root_node):
        piped = node.type == "pipeline_chain" and any(child.type == "|" for child in node.children)
        if node.type == "command" or piped:
            found.append((node.start_point[0] + 1, node_text(node)))
    return found


def agent_op_table(text: str) -> dict[str, str]:
    """{op name: entry source} of the hashtable literal assigned to ``$primitives``."""
    assignments = [
        node for node in walk(parse(text).root_node) if node.type == "assignment_expression" and node_text(node.children[0]).strip().lower() == "$primitives"
    ]
    assert len(assignments) == 1, "the agent must assign $primitives exactly once"
    value = assignments[0].children[-1]
    table = _first_descendant(value, "hash_literal_expression")
    assert table is not None, "$primitives must be a hashtable literal"
    body = next(c for c in table.children if c.type == "hash_literal_body")
    ops: dict[str, str] = {}
    for entry in body.children:
        if entry.type != "hash_entry":
            continue
        key = node_text(next(c for c in entry.children if c.type == "key_expression")).strip()
        name = key.strip("'\"")
        assert name not in ops, f"operation {name} is defined twice"
        ops[name] = node_text(entry)
    return ops


def agent_op_names(text: str) -> list[str]:
    """The operation names of the agent's dispatch table, in source order."""
    return list(agent_op_table(text))


def hashtable_keys(text: str) -> set[str]:
    """Every key written in any hashtable literal of the script."""
    return {node_text(node).strip().strip("'\"") for node in walk(parse(text).root_node) if node.type == "key_expression"}


def _strip_parenthesised(cell: str) -> str:
    out, depth = [], 0
    for ch in cell:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _strip_prose_tail(cell: str) -> str:
    """Drop a closing explanation such as ``: the group's rules are replaced``.

    A colon at nesting depth 0 that is followed by no ``{`` or ``[`` ends the list
    of names; a colon that introduces a structure (``files: ... {...}``) does not.
    """
    depth = 0
    for i, ch in enumerate(cell):
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == ":" and depth == 0 and not re.search(r"[{\[]", cell[i:]):
            return cell[:i]
    return cell


def _names(cell: str) -> list[str]:
    return re.findall(r"`([a-z_][a-z0-9_]*)`", cell)


def protocol_primitives() -> dict[str, dict[str, list[str]]]:
    """The primitives table of docs/agent-protocol.md: {op: {"args": [...], "result": [...]}}.

    Argument and result names are the backticked names of their cells, leaving out
    parenthesised remarks (which hold example values such as ``My`` or ``"absent"``).
    """
    text = read(PROTOCOL_DOC)
    section = text.split("## Primitives", 1)[1].split("\n#", 1)[0]
    table: dict[str, dict[str, list[str]]] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 3, line
        (op,) = _names(cells[0])
        table[op] = {
            "args": _names(_strip_parenthesised(cells[1])),
            "result": _names(_strip_prose_tail(_strip_parenthesised(cells[2]))),
        }
    assert table, "no primitives table found in the protocol document"
    return table


def protocol_error_types() -> set[str]:
    text = read(PROTOCOL_DOC)
    section = text.split("### Errors a primitive reports", 1)[1]
    return set(re.findall(r"`([A-Z][A-Za-z]+)`", section))


def protocol_bootstrap() -> str:
    match = re.search(r"```powershell\n(" + re.escape(BOOTSTRAP_MARKER) + r"\n.*?)```", read(PROTOCOL_DOC), re.S)
    assert match, "the protocol document shows no bootstrap"
    return match.group(1)


@pytest.fixture(scope="module")
def agent() -> str:
    return read(AGENT)


@pytest.fixture(scope="module")
def agent_code(agent: str) -> str:
    return code_only(agent)


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("path", [AGENT, BOOTSTRAP], ids=lambda p: p.name)
def test_script_parses_without_errors(path: Path) -> None:
    assert parse_problems(read(path)) == []


def test_parse_problems_finds_broken_syntax() -> None:
    # The checker itself: PowerShell 7 operators and unbalanced braces are reported.
    assert parse_problems("$x = $a ?? 1\n")
    assert parse_problems("$x = $a ? 1 : 2\n")
    assert parse_problems("if ($a) { $b = 1\n")


# --------------------------------------------------------------------------- markers and bootstrap


def test_agent_starts_with_marker_and_param_block(agent: str) -> None:
    lines = agent.splitlines()
    assert lines[0] == AGENT_MARKER
    assert lines[1] == "param($Request)"


def test_bootstrap_is_the_documented_one() -> None:
    text = read(BOOTSTRAP)
    assert text.splitlines()[0] == BOOTSTRAP_MARKER
    assert text.rstrip("\n") == protocol_bootstrap().rstrip("\n")


def test_bootstrap_gives_stdin_to_no_cmdlet() -> None:
    text = read(BOOTSTRAP)
    code = without_comments(text)
    # Module logging records a cmdlet's input: stdin is read by a plain foreach and parsed by .NET.
    for cmdlet in ("ConvertFrom-Json", "Out-String", "ForEach-Object", "Write-", "Invoke-Expression"):
        assert cmdlet.lower() not in code.lower(), cmdlet
    assert named_commands(text) == ["Add-Type -AssemblyName System.Web.Extensions"]
    assert [node_text(n) for n in command_nodes(text)][1:] == ["& ([ScriptBlock]::Create($xuPayload.agent)) $xuPayload.request"]
    assert [line for line, source in cmdlet_inputs(text) if "|" in source] == []
    tree = parse(text)
    inputs = [n for n in walk(tree.root_node) if n.type == "variable" and node_text(n).lower() == "$input"]
    (loop,) = [n for n in walk(tree.root_node) if n.type == "foreach_statement"]
    collection = loop.children[[c.type for c in loop.children].index("in") + 1]
    assert len(inputs) == 1 and node_text(collection).strip() == "$input"
    assert "[System.Web.Script.Serialization.JavaScriptSerializer]::new()" in code
    assert "$xuJson.MaxJsonLength = [int]::MaxValue" in code
    assert '$xuJson.DeserializeObject([string]::Join("`n", $xuLines.ToArray()))' in code
    # A payload that is not JSON: a fixed message, since the parser's would quote stdin.
    assert "catch { throw 'the payload on stdin is not JSON' }" in code


def test_bootstrap_fits_on_a_command_line() -> None:
    # cmd.exe and CreateProcess cap a command line near 8 KB; the script travels as base64 of UTF-16-LE.
    text = read(BOOTSTRAP)
    assert len(text.encode("utf-8")) < 1024
    encoded = base64.b64encode(text.encode("utf-16-le"))
    assert len("PowerShell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand ") + len(encoded) < 8191


@pytest.mark.parametrize("path", [AGENT, BOOTSTRAP], ids=lambda p: p.name)
def test_script_is_ascii(path: Path) -> None:
    # Windows PowerShell reads BOM-less text in the ANSI code page; ASCII is the same in all of them.
    read(path).encode("ascii")


def test_agent_stays_small(agent: str) -> None:
    # It travels on stdin with every call, without its comment-only lines: with a PFX beside it, the payload still fits
    # in one WS-Man Send (200,000-byte chunks, ../shared/docs/winrm-lab-notes.md), with room to spare.
    assert len(without_comment_lines(agent).encode("utf-8")) < 60_000


def test_the_agent_sent_is_the_agent_without_its_comment_lines(agent: str) -> None:
    sent = without_comment_lines(agent)
    assert sent.startswith(AGENT_MARKER + "\n") and sent == AgentClient(lambda _c, _s: (0, "", ""))._agent
    assert sent.split("\n")[1:] == [line.lstrip(" ") for line in agent.split("\n")[1:] if not line.lstrip().startswith("#")]
    # The same program: what is left parses as it did, and no code was lost with the comments.
    assert parse_problems(sent) == []
    assert " ".join(without_comments(sent).split()) == " ".join(without_comments(agent).split())


def test_no_line_of_the_agent_that_starts_with_a_hash_is_inside_a_string(agent: str) -> None:
    # What makes dropping comment-only lines safe: every such line is a comment (no string, here-string or block
    # comment spans lines, so none holds a line that only looks like one).
    spanning = [
        f"line {node.start_point[0] + 1}: {node.type}"
        for node in walk(parse(agent).root_node)
        if node.type in ("string_literal", "expandable_string_literal", "verbatim_string_characters", "expandable_here_string_literal",
                         "verbatim_here_string_characters", "comment")
        and node.start_point[0] != node.end_point[0]
    ]
    assert spanning == []
    comments = {node.start_point[0] for node in walk(parse(agent).root_node) if node.type == "comment"}
    hash_lines = {number for number, line in enumerate(agent.split("\n")) if line.lstrip().startswith("#")}
    assert hash_lines <= comments


def test_the_spanning_check_sees_a_string_across_lines() -> None:
    assert any(node.start_point[0] != node.end_point[0] for node in walk(parse("$a = 'x\n# y'\n").root_node) if node.type == "string_literal")
    assert any(node.start_point[0] != node.end_point[0] for node in walk(parse("<# a\n# b #>\n").root_node) if node.type == "comment")


# --------------------------------------------------------------------------- the contract


def test_op_name_extraction() -> None:
    sample = "$x = 1\n$primitives = @{\n    'a_op' = { param($a) @{ inner = 1 } }\n    b_op = { param($a) 2 }\n}\n"
    assert agent_op_names(sample) == ["a_op", "b_op"]


def test_protocol_table_parsing() -> None:
    table = protocol_primitives()
    assert table["file_write"]["args"] == ["path", "content", "bom", "backup_path", "expected_sha256"]
    assert table["fw_set"]["result"] == ["removed", "added"]
    assert table["task_register"]["result"] == ["registered", "run_at_utc"]
    assert "hostname" in table["discover"]["result"] and "files" in table["discover"]["result"]


def test_agent_ops_are_the_protocol_ops(agent: str) -> None:
    assert sorted(agent_op_names(agent)) == sorted(protocol_primitives())


def test_agent_ops_read_their_documented_args(agent: str) -> None:
    table = agent_op_table(agent)
    missing = {op: [arg for arg in spec["args"] if not re.search(r"\$a\." + arg + r"\b", table[op])] for op, spec in protocol_primitives().items()}
    assert {op: args for op, args in missing.items() if args} == {}


def test_agent_ops_read_only_documented_args(agent: str) -> None:
    table = agent_op_table(agent)
    extra = {}
    for op, spec in protocol_primitives().items():
        read_args = set(re.findall(r"\$a\.(\w+)", table[op]))
        if read_args - set(spec["args"]):
            extra[op] = sorted(read_args - set(spec["args"]))
    assert extra == {}


def test_agent_writes_the_documented_result_keys(agent: str) -> None:
    keys = hashtable_keys(agent)
    missing = {op: [name for name in spec["result"] if name not in keys] for op, spec in protocol_primitives().items()}
    assert {op: names for op, names in missing.items() if names} == {}


def test_agent_answer_envelope(agent: str) -> None:
    # {"agent", "protocol", "results": [{"id", "op", "status", "result" | "error": {"type", "message"}, "elapsed_ms"}]}
    assert {"agent", "protocol", "results", "id", "op", "type", "message"} <= hashtable_keys(agent)
    for member in ("result", "error", "elapsed_ms"):
        assert f"$entry.{member} = " in agent
    for status in ("ok", "error", "skipped"):
        assert f"$entry.status = '{status}'" in agent


def test_agent_error_types_are_the_documented_ones(agent: str) -> None:
    used = set(re.findall(r"Stop-Xu '(\w+)'", agent))
    assert used, "the agent raises no named errors"
    assert used <= protocol_error_types()
    assert {"UnknownOperation", "NotFound", "HashMismatch", "InvalidArgument", "CertreqFailed"} <= used


def test_agent_ops_match_the_lab(agent: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(LAB_DIR))
    lab = importlib.import_module("xulab.primitives")
    assert sorted(agent_op_names(agent)) == sorted(lab.PRIMITIVES)


def test_agent_validates_names_with_the_documented_patterns(agent: str) -> None:
    doc = read(PROTOCOL_DOC)
    for pattern in (r"^[A-Za-z0-9_.-]{1,64}$", r"^[A-Za-z0-9 ._-]{1,64}$"):
        assert pattern in doc
        # The agent anchors with \z: $ would also accept a trailing newline.
        assert f"'{pattern[:-1]}\\z'" in agent


# --------------------------------------------------------------------------- Windows PowerShell 5.1


@pytest.mark.parametrize(
    ("what", "pattern"),
    [
        ("null-coalescing ??", r"\?\?"),
        ("null-conditional ?. or ?[", r"\?\.|\?\["),
        ("ternary", r"\s\?\s[^\n]*\s:\s"),
        ("pipeline chain &&", r"&&"),
        ("pipeline chain ||", r"\|\|"),
        ("-Parallel", r"(?i)-Parallel\b"),
        ("$PSStyle", r"(?i)\$PSStyle\b"),
        ("clean block", r"(?im)^\s*clean\s*\{"),
        ("using namespace", r"(?im)^\s*using\s+namespace\b"),
        ("class definition", r"(?im)^\s*class\s+\w+"),
    ],
)
def test_no_powershell7_syntax(agent_code: str, what: str, pattern: str) -> None:
    found = [n + 1 for n, line in enumerate(agent_code.splitlines()) if re.search(pattern, line)]
    assert found == [], f"{what} on lines {found}"


def test_no_generic_type_names_with_backtick(agent: str) -> None:
    assert not re.search(r"`\d\[", agent)


# --------------------------------------------------------------------------- no code from text


@pytest.mark.parametrize(
    "pattern",
    [
        r"(?i)\bInvoke-Expression\b",
        r"(?i)(?<![\w-])iex(?![\w-])",
        r"(?i)\[ScriptBlock\]::Create",
        # Add-Type only loads an assembly by name (the one such line is checked below), never compiles text.
        r"(?i)\bAdd-Type\b(?! -AssemblyName System\.ServiceProcess\n)",
        r"(?i)\bStart-Process\b",
        r"(?i)\bcmd(\.exe)?\s+/c\b",
        r"(?i)\bInvoke-Command\b",
        r"(?i)-Filter\b",
        r"(?i)-Query\b",
    ],
)
def test_no_code_built_from_text(agent: str, pattern: str) -> None:
    # Checked with strings included: the scheduled task's command is a string too.
    assert not re.search(pattern, without_comments(agent))


def test_certreq_gets_an_argument_array(agent: str, agent_code: str) -> None:
    calls = re.findall(r"(?i)(?<![\w$])certreq\b.*", agent_code)
    assert calls == ["certreq.exe $certreqArgs 2>&1 | ForEach-Object { [string]$_ }"]
    assert re.search(r"&\s*certreq\.exe\s+\$certreqArgs\b", agent_code)
    assert re.search(r"\$certreqArgs = @\('-enroll', '-machine', '-q', '-cert', \$tp, 'Renew', 'ReuseKeys'\)", agent)


def test_only_the_task_action_builds_a_command_line(agent: str) -> None:
    text = without_comments(agent)
    assert len(re.findall(r"(?i)-Command\b", text)) == 1
    assert re.findall(r"(?i)powershell\.exe", text) == ["powershell.exe"]
    assert "New-ScheduledTaskAction -Execute 'powershell.exe' -Argument" in text
    block = agent_op_table(agent)["task_register"]
    # The two values placed in it come from validated names, and are quoted.
    assert "$name = Assert-XuName $a.name $GroupTaskPattern 'name'" in block
    assert "$group = Assert-XuName $a.fw_group_to_remove $GroupTaskPattern 'fw_group_to_remove'" in block
    assert "-f (Format-XuQuoted $group), (Format-XuQuoted $name)" in block


def test_password_is_only_passed_to_the_import(agent: str) -> None:
    text = without_comments(agent)
    uses = re.findall(r".*\.password\b.*", text)
    assert len(uses) == 2, uses
    # Read once into the list of passwords to try ("" and a real null for a PFX without one), and by the error filter.
    (read,) = [line.strip() for line in uses if "$a.password" in line]
    assert read == "if ($a.password -is [string] -and $a.password.Length -gt 0) { $pfxPasswords = @($a.password) }"
    assert sum("$op.args.password" in line for line in uses) == 1
    # The candidates go to the two imports only.
    given = [line.strip() for line in re.findall(r".*\$pfxPasswords?\b.*", text) if "$pfxPasswords = " not in line]
    assert given == [
        "for ($i = 0; $i -lt $pfxPasswords.Count; $i++) {",
        "try { $probe.Import($bytes, $pfxPasswords[$i], 'MachineKeySet'); $pfxPassword = $pfxPasswords[$i]; break }",
        "catch { if ($i -eq $pfxPasswords.Count - 1) { throw } }",
        "$coll.Import($bytes, $pfxPassword, $flags)",
    ]


def test_command_input_finder() -> None:
    sample = "$y = $a.password | Out-String\nFoo -Password $a.password\n$p.Import($b, $a.password, 'x')\n& $sb $opArgs\n"
    assert cmdlet_inputs(sample) == [(1, "$a.password | Out-String"), (1, "Out-String"), (2, "Foo -Password $a.password"), (4, "& $sb $opArgs")]


def test_secrets_reach_only_dotnet_methods(agent: str) -> None:
    # Module logging records what every cmdlet is given: the password and the PFX go only to .NET methods.
    # (Verbatim strings are text, not values: 'pfx_b64 is required' is no leak; an expandable string could be.)
    given = [(line, re.sub(r"'[^']*'", "''", source)) for line, source in cmdlet_inputs(without_comments(agent))]
    leaks = [(line, source) for line, source in given if any(re.search(p, source) for p in SECRET_PATTERNS)]
    assert leaks == []
    # Inside pfx_import the decoded PFX and the collections it was imported into stay with .NET as well.
    start = agent.index("    'pfx_import' = {")
    block = agent_op_table(agent)["pfx_import"]
    assert agent[start + 4 :].startswith(block)
    first, last = agent[:start].count("\n") + 1, agent[: start + 4 + len(block)].count("\n") + 1
    inside = [source for line, source in cmdlet_inputs(without_comments(agent)) if first <= line <= last]
    assert inside, "pfx_import calls no command at all?"
    assert [source for source in inside if re.search(r"\$(bytes|probe|coll)\b", source)] == []
    # The cmdlets that take a PFX or a password are not used at all.
    for cmdlet in ("Import-PfxCertificate", "Get-PfxData", "Get-PfxCertificate", "ConvertTo-SecureString", "ConvertFrom-Json", "Out-String"):
        assert cmdlet.lower() not in agent.lower(), cmdlet


def test_agent_reads_the_request_as_dictionaries(agent: str, agent_code: str) -> None:
    # The bootstrap's JavaScriptSerializer gives Dictionary[string,object]: member access works, PSObject views do not.
    for pattern in (r"(?i)\.PSObject\b", r"(?i)\[pscustomobject\]", r"(?i)\[psobject\]", r"(?i)\.Properties\b", r"(?i)\.PSBase\b"):
        assert not re.search(pattern, agent_code), pattern
    # Its keys are case-sensitive: the agent reads them exactly as the protocol spells them (lower case).
    read_keys = re.findall(r"\$(?:a|x|op|Request)\.(\w+)", agent_code)
    assert read_keys and [k for k in read_keys if k != k.lower()] == []


def test_server_name_pattern_is_the_documented_one(agent: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (pattern,) = re.findall(r"\$ServerNamePattern = '([^']+)'", agent)
    documented = pattern.replace("\\z", "$")
    assert f"`{documented}`" in read(PROTOCOL_DOC)
    monkeypatch.syspath_prepend(str(LAB_DIR))
    lab = importlib.import_module("xulab.probe")
    assert lab.SERVER_NAME.pattern == pattern.replace("\\z", "\\Z")


# --------------------------------------------------------------------------- stdout holds one JSON object


def test_no_host_output(agent_code: str) -> None:
    for cmdlet in ("Write-Host", "Write-Output", "Write-Information", "Out-Host", "Out-Default", "echo"):
        assert not re.search(r"(?i)(?<![\w-])" + re.escape(cmdlet) + r"(?![\w-])", agent_code), cmdlet


def test_streams_are_silenced(agent: str) -> None:
    for variable in (
        "$ErrorActionPreference = 'Stop'",
        "$ProgressPreference = 'SilentlyContinue'",
        "$WarningPreference = 'SilentlyContinue'",
        "$VerbosePreference = 'SilentlyContinue'",
        "$InformationPreference = 'SilentlyContinue'",
    ):
        assert variable in agent


def test_list_additions_are_discarded(agent_code: str) -> None:
    # ArrayList.Add returns the index and StringBuilder.Append the builder: either would reach stdout.
    lists = set(re.findall(r"\$(\w+) = \[Collections\.ArrayList\]::new\(\)", agent_code))
    builders = set(re.findall(r"\$(\w+) = \[Text\.StringBuilder\]::new\(\)", agent_code))
    assert lists and builders
    for line in agent_code.splitlines():
        for name in lists:
            for m in re.finditer(r"\$" + name + r"\.Add\(", line):
                assert line[: m.start()].endswith("[void]"), line
        for name in builders:
            for m in re.finditer(r"\$" + name + r"\.Append\(", line):
                assert line[: m.start()].endswith("$null = "), line


def test_answer_is_the_only_output_then_exit_0(agent: str) -> None:
    text = without_comments(agent)
    assert "[Console]::Out.Write" not in text  # psrp would not see it: the answer goes down the pipeline
    assert "ConvertTo-Json -InputObject" in text and "-Compress -Depth 10" in text
    assert [line for line in text.splitlines() if line.strip()][-3:] == ["$json", "$global:LASTEXITCODE = 0", "exit 0"]
    # $json is emitted nowhere else.
    assert len(re.findall(r"(?m)^\s*\$json\s*$", text)) == 1


def test_no_automatic_variable_is_assigned_or_shadowed(agent: str, agent_code: str) -> None:
    automatic = {
        "host",
        "input",
        "args",
        "error",
        "pid",
        "home",
        "profile",
        "psitem",
        "this",
        "sender",
        "event",
        "eventargs",
        "myinvocation",
        "pscmdlet",
        "psboundparameters",
        "executioncontext",
        "matches",
        "true",
        "false",
        "_",
        "lastexitcode",
    }
    # ($null = ... is the discard idiom, not an assignment.)
    assigned = {m.lower() for m in re.findall(r"\$(\w+)\s*(?:=(?!=)|\+=)", agent_code)}
    params = {
        node_text(node).lstrip("$").lower()
        for node in walk(parse(agent).root_node)
        if node.type == "variable" and node.parent is not None and node.parent.type == "script_parameter"
    }
    assert (assigned | params) & automatic == set()
