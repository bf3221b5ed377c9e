"""No possibly-null value reaches a .NET method of the agent unguarded.

PowerShell converts ``$null`` to ``""`` when it binds a .NET ``string`` parameter, so
``[IO.File]::Replace($tmp, $Path, $null)`` passes an empty backup name, which .NET
Framework rejects ("The path is not of a legal form"); a password-less PFX's ``$null``
password becomes ``""``, which is not the same PFX password to Windows. Which parameters
are strings cannot be seen offline, so every .NET call is held to one rule.

The rule, per scope (a ``function`` or a script block ``{ ... }``, each on its own):

* a variable **can be null** when the scope assigns it ``$null`` (``$x = $null``) or it
  is one of the scope's parameters declared without a type (a typed parameter binds
  what its type makes of null: ``[string]`` gives ``""``, ``[int]`` 0);
* a value read from the request (``$a.key``, ``$x.key``, ``$op.key``, ``$Request.key``)
  can be null: a missing key reads as null;
* such a value must not be, by itself, an argument of a .NET method call
  (``[Type]::Method(...)``, ``$obj.Method(...)``, ``[Type]::new(...)``) unless
  - it is cast (``[int]$x``, ``[string]$x``: the cast says what the method gets), or
  - the call sits in the block of an ``if`` or ``elseif`` whose condition is the value
    itself, ``$null -ne <value>`` or ``<value> -ne $null`` (alone or joined by ``-and``).

A literal ``$null`` argument is visible at the call and reviewed there (the agent's go to
parameters that are not strings: an ``AsyncCallback``, a state object, a certificate collection).
A null that must reach .NET as null is written
``[System.Management.Automation.Language.NullString]::Value``.
"""

from __future__ import annotations

import re

import tree_sitter
from agent.test_agent_script import AGENT, node_text, parse, parse_problems, read, walk

SCOPES = ("function_statement", "script_block_expression")
REQUEST_VARIABLES = ("$a", "$x", "$op", "$request")

# What the agent looked like before nulls were guarded: both calls must be reported.
OLD_PATTERN = """
function Write-XuAtomic([string]$Path, [byte[]]$Bytes, $Backup) {
    $tmp = $Path + '.xutls.tmp'
    [IO.File]::WriteAllBytes($tmp, $Bytes)
    if ([IO.File]::Exists($Path)) { [IO.File]::Replace($tmp, $Path, $Backup) } else { [IO.File]::Move($tmp, $Path) }
}
$primitives = @{
    'file_restore' = {
        param($a)
        Write-XuAtomic $path $bytes $null
    }
    'pfx_import' = {
        param($a)
        $probe = [System.Security.Cryptography.X509Certificates.X509Certificate2Collection]::new()
        $probe.Import($bytes, $a.password, 'MachineKeySet')
    }
}
"""


def _scope_of(node: tree_sitter.Node) -> tree_sitter.Node:
    parent = node.parent
    while parent is not None:
        if parent.type in SCOPES:
            return parent
        node, parent = parent, parent.parent
    return node


def _untyped_parameters(scope: tree_sitter.Node) -> set[str]:
    found = set()
    for node in walk(scope):
        typed = any(child.type == "attribute_list" for child in node.children)
        if node.type == "script_parameter" and not typed and _scope_of(node) == scope:
            found.add(node_text(node).strip().lower())
    return found


def _assigned_null(scope: tree_sitter.Node) -> set[str]:
    found = set()
    for node in walk(scope):
        if node.type == "assignment_expression" and _scope_of(node) == scope:
            left, right = node_text(node.children[0]).strip().lower(), node_text(node.children[-1]).strip().lower()
            if right == "$null" and re.fullmatch(r"\$\w+", left):
                found.add(left)
    return found


def _can_be_null(value: str, nullable: set[str]) -> bool:
    value = value.lower()
    if value in nullable:
        return True
    member = re.fullmatch(r"(\$\w+)\.\w+", value)
    return member is not None and member.group(1) in REQUEST_VARIABLES


def _guarded(call: tree_sitter.Node, value: str) -> bool:
    v = re.escape(value.lower())
    test = re.compile(rf"{v}|\$null -ne {v}|{v} -ne \$null")
    node, parent = call, call.parent
    while parent is not None and parent.type not in SCOPES:
        if parent.type in ("if_statement", "elseif_clause"):
            blocks = [child for child in parent.children if child.type == "statement_block"]
            condition = next((child for child in parent.children if child.type == "pipeline"), None)
            if blocks and node == blocks[0] and condition is not None:
                parts = re.split(r"\s+-and\s+", node_text(condition).strip().lower())
                if any(test.fullmatch(part.strip().strip("()").strip()) for part in parts):
                    return True
        node, parent = parent, parent.parent
    return False


def null_arguments(text: str) -> list[str]:
    """'line N: <call>: <argument>' for every possibly-null argument of a .NET method call."""
    tree = parse(text)
    nullable_by_scope: dict[int, set[str]] = {}
    found = []
    for call in walk(tree.root_node):
        if call.type != "invokation_expression" or not any(child.type == "argument_list" for child in call.children):
            continue
        scope = _scope_of(call)
        if scope.id not in nullable_by_scope:
            nullable_by_scope[scope.id] = _untyped_parameters(scope) | _assigned_null(scope)
        arguments = next(child for child in call.children if child.type == "argument_list")
        for argument in walk(arguments):
            if argument.type != "argument_expression" or argument.parent is None or argument.parent.parent != arguments:
                continue
            value = node_text(argument).strip()
            if _can_be_null(value, nullable_by_scope[scope.id]) and not _guarded(call, value):
                found.append(f"line {call.start_point[0] + 1}: {node_text(call)[:70]}: {value}")
    return found


def test_the_old_pattern_is_reported() -> None:
    assert parse_problems(OLD_PATTERN) == []
    found = null_arguments(OLD_PATTERN)
    assert [f.split(": ")[-1] for f in found] == ["$Backup", "$a.password"], found


def test_guards_and_casts_are_recognised() -> None:
    sample = """
function F($Value, [string]$Name) {
    $b = $null
    if ($b) { [IO.File]::Delete($b) }
    if ($null -ne $Value -and $Name) { [IO.File]::Delete($Value) }
    [IO.File]::Delete([string]$Value)
    [IO.File]::Delete($Name)
    [IO.File]::Exists([System.Management.Automation.Language.NullString]::Value)
}
$f = { param($a) $s = [IO.StringReader]::new($a.text) }
"""
    assert null_arguments(sample) == ["line 10: [IO.StringReader]::new($a.text): $a.text"]
    # The other branch of an if is not guarded by its condition; an elseif's own condition guards its block.
    assert null_arguments("function G($v) { if ($v) { } else { [IO.File]::Delete($v) } }\n")
    assert null_arguments("function G($v) { if ($x) { } elseif ($v) { [IO.File]::Delete($v) } }\n") == []
    assert null_arguments("function G($v) { if ($v) { } elseif ($x) { [IO.File]::Delete($v) } }\n")


def test_no_possibly_null_value_reaches_dotnet() -> None:
    assert null_arguments(read(AGENT)) == []
