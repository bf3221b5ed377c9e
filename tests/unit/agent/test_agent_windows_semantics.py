"""Static checks that the agent handles what real Windows does and the lab's Python cannot show.

Each test names the Windows behaviour (see ../shared/docs/windows-traps.md) and holds the
agent's syntax tree to the handling of it. Every check is a function of the script text,
so that it can be, and was, run against the agent as it was before each fix
(``git show <commit>:plugins/plugin_utils/agent/xu_agent.ps1``): each check fails there.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import tree_sitter
from agent.test_agent_script import AGENT, BOOTSTRAP, PROTOCOL_DOC, agent_op_table, node_text, parse, read, walk, without_comments


@pytest.fixture(scope="module")
def agent() -> str:
    return read(AGENT)


def function_source(text: str, name: str) -> str:
    """The source of ``function <name> ... { ... }`` (comments removed)."""
    for node in walk(parse(text).root_node):
        if node.type == "function_statement":
            found = next((c for c in node.children if c.type == "function_name"), None)
            if found is not None and node_text(found).lower() == name.lower():
                return without_comments(node_text(node))
    raise AssertionError(f"no function {name}")


def op_source(text: str, op: str) -> str:
    return without_comments(agent_op_table(text)[op])


def squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text)


# --------------------------------------------------------------------------- file writes


def check_atomic_write_never_loses_the_target(text: str) -> None:
    body = squeeze(function_source(text, "Write-XuAtomic"))
    # File.Replace always gets a backup name of its own (never $null, which .NET would see as "").
    assert "$keep = $Backup" in body and "if (-not $keep) { $keep = $Path + '.xutls.bak' }" in body
    assert "[IO.File]::Replace($tmp, $Path, $keep)" in body
    # When it fails after moving the original away (ERROR_UNABLE_TO_MOVE_REPLACEMENT_2), the original goes back.
    replace_try = body[body.index("try { [IO.File]::Replace") :]
    assert replace_try.startswith("try { [IO.File]::Replace($tmp, $Path, $keep) } catch { if (-not [IO.File]::Exists($Path)) {")
    assert "try { [IO.File]::Move($keep, $Path) } catch { if ([IO.File]::Exists($tmp)) { [IO.File]::Move($tmp, $Path) } }" in replace_try
    assert replace_try.index("throw") > replace_try.index("[IO.File]::Move($keep, $Path)")
    # The temporary file is deleted only once the target exists again.
    assert "finally { if ([IO.File]::Exists($tmp) -and [IO.File]::Exists($Path)) { [IO.File]::Delete($tmp) } }" in body


def check_callers_never_pass_null_backups(text: str) -> None:
    code = without_comments(text)
    calls = re.findall(r"Write-XuAtomic [^\n]*", code)
    assert calls and [c for c in calls if c.rstrip().endswith("$null")] == []


def check_bom_is_written_and_hashed(text: str) -> None:
    block = squeeze(op_source(text, "file_write"))
    bom = block.index("if ($a.bom -eq $true) { $bytes = [byte[]]($Utf8Bom + $bytes) }")
    assert bom < block.index("Write-XuAtomic $path $bytes $backup") < block.index("sha256 = (Get-XuSha256 $bytes)")
    assert "$Utf8Bom = [byte[]](0xEF, 0xBB, 0xBF)" in text


def check_discover_decodes_strictly(text: str) -> None:
    assert "$Utf8Strict = [Text.UTF8Encoding]::new($false, $true)" in text
    entry = squeeze(function_source(text, "Read-XuFileEntry"))
    assert "try { $f.content = $Utf8Strict.GetString($b, $o, $b.Length - $o); $f.utf8_valid = $true } catch { $f.content = $null }" in entry
    # The hash is taken before decoding, so bytes that are not UTF-8 still have one.
    assert entry.index("$f.sha256 = Get-XuSha256 $b") < entry.index("$Utf8Strict.GetString")
    assert "os_version = ('{0}.{1}.{2}' -f $v.Major, $v.Minor, $v.Build)" in squeeze(op_source(text, "discover"))


@pytest.mark.parametrize(
    "check",
    [check_atomic_write_never_loses_the_target, check_callers_never_pass_null_backups, check_bom_is_written_and_hashed, check_discover_decodes_strictly],
)
def test_files(agent: str, check: Callable[[str], None]) -> None:
    check(agent)


# --------------------------------------------------------------------------- accounts


def documented_account_groups() -> dict[str, list[str]]:
    section = read(PROTOCOL_DOC).split("### Accounts", 1)[1].split("###", 1)[0]
    system = re.search(r"LocalSystem `(S-1-5-18)`: (.*?);", section, re.S)
    service = re.search(r"NetworkService `(S-1-5-20)` and virtual\s+accounts `S-1-5-80-\.\.\.`: (.*?)\)", section, re.S)
    assert system and service
    sids = {"Everyone": "S-1-1-0", "Authenticated Users": "S-1-5-11"}

    def listed(text: str) -> list[str]:
        named = re.findall(r"`(S-1-[0-9-]+)`", text)
        return sorted(set(named) | {sid for name, sid in sids.items() if name in text})

    return {"system": listed(system.group(2)), "service": listed(service.group(2))}


def test_fixed_account_groups_are_the_documented_ones(agent: str) -> None:
    documented = documented_account_groups()
    body = function_source(agent, "Get-XuAccountGroups")
    (system,) = re.findall(r"if \(\$Sid -eq \$SystemSid\) \{ return , @\(([^)]*)\) \}", body)
    assert sorted(re.findall(r"'(S-[0-9-]+)'", system)) == documented["system"]
    (service,) = re.findall(r"\$ServiceAccountGroups = (.*)", agent)
    assert sorted(re.findall(r"'(S-[0-9-]+)'", service)) == documented["service"]
    assert "if ($Sid -in 'S-1-5-19', 'S-1-5-20' -or $Sid.StartsWith('S-1-5-80-')) { return , @($ServiceAccountGroups) }" in body


def test_account_lookups_never_fail_discover(agent: str) -> None:
    # A name Windows cannot translate gives a null SID; groups that cannot be read give null, never an error.
    sid = squeeze(function_source(agent, "Get-XuAccountSid"))
    assert "try { [Security.Principal.NTAccount]::new($name).Translate([Security.Principal.SecurityIdentifier]).Value } catch { $null }" in sid
    groups = function_source(agent, "Get-XuAccountGroups")
    assert groups.rstrip().endswith("} catch { $null }\n}") or groups.rstrip().endswith("} catch { $null }\r\n}")
    assert "[System.ServiceProcess.ServiceController]::new($Name).DependentServices" in function_source(agent, "Get-XuDependents")
    assert "} catch { $null = $_ }" in function_source(agent, "Get-XuDependents")


# --------------------------------------------------------------------------- certificates


def check_cert_list_reports_sids_and_archived(text: str) -> None:
    block = squeeze(op_source(text, "cert_list"))
    assert "if ($a.include_archived -eq $true) { $flags += ', IncludeArchived' }" in block
    assert "archived = $c.Archived" in block
    info = squeeze(function_source(text, "Get-XuKeyInfo"))
    assert "GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier])" in info
    assert "try { $identity = $sid.Translate([Security.Principal.NTAccount]).Value } catch { $null = $_ }" in info
    assert "[System.Security.Principal.NTAccount])" not in info


def check_pfx_import_repairs(text: str) -> None:
    block = squeeze(op_source(text, "pfx_import"))
    assert "$st = Open-XuStore 'My' 'ReadWrite, IncludeArchived'" in block
    assert "$present = $null -ne $old -and $old.HasPrivateKey -and -not $old.Archived" in block
    assert "$repaired = $null -ne $old -and -not $present" in block
    # Add keeps the archived flag of the entry it replaces: the new entry is unarchived after it.
    assert block.index("$st.Add($c)") < block.index("if ($null -ne $new -and $new.Archived) { $new.Archived = $false }")
    assert "repaired = $repaired" in block


def check_key_grant_reports_the_sid(text: str) -> None:
    block = squeeze(op_source(text, "key_grant_read"))
    assert block.count("sid = $sid.Value") == 2
    assert "GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier])" in block


def check_certreq_runs_as_system(text: str) -> None:
    block = squeeze(op_source(text, "cert_renew_reuse_key"))
    assert "$runAs = 'machine'" in block and "if ($runAs -eq 'machine') {" in block
    assert "$run = Invoke-XuAsSystem @(@{ arguments = $certreqArgs }) $limit" in block
    assert "$swept = $run.swept; $sweepError = $run.sweep_error" in block
    assert "$run = Invoke-XuCertreqHere @(@{ arguments = $certreqArgs })" in block
    assert "exit_code = $code; enrolled_as = $runAs" in block
    run = squeeze(function_source(text, "Invoke-XuAsSystem"))
    # A fixed-pattern name, output in the SYSTEM/Administrators-only folder, the command from validated values only.
    assert "Initialize-XuJournalDir" in run
    assert "$name = 'xtractuniversal.tls certreq ' + $Id" in run and "if (-not $Id) { $Id = [Guid]::NewGuid().ToString('N') }" in run
    assert "$out = [IO.Path]::Combine($JournalDir, 'certreq-' + $Id + '.txt')" in run
    # What a killed call left behind goes first; this call's own task says until when it may be at work.
    assert run.index("$sweep = Remove-XuStaleCertreq") < run.index("Register-ScheduledTask")
    assert "$task.Description = 'xtractuniversal.tls certreq until ' + (Format-XuTime ([DateTime]::UtcNow.AddSeconds($TimeoutS + 120)))" in run
    # Every value is quoted; each step ends the task's one script with its exit code when it fails.
    assert "$quoted = @(foreach ($value in $step.arguments) { Format-XuQuoted ([string]$value) }) -join ' '" in run
    step = '"& certreq.exe {0} {1} {2}; if (`$LASTEXITCODE -ne 0) {{ exit `$LASTEXITCODE }}" -f $quoted, $redirect, (Format-XuQuoted $out)'
    assert step in run
    assert "if ($step.needs) { [void]$parts.Add((\"if (-not (Test-Path -LiteralPath {0})) {{ exit 0 }}\" -f (Format-XuQuoted $step.needs))) }" in run
    # The first step's output replaces, the others append to it.
    assert "$redirect = '*>>' if ($parts.Count -eq 0) { $redirect = '*>' }" in run
    # A script step is one of the agent's constants, never a request value.
    assert "if ($step.script) { [void]$parts.Add((\"& {{ {0} }} {1}\" -f $step.script, (Format-XuQuoted $out))); continue }" in run
    scripts = [line for line in without_comments(text).splitlines() if "script = " in line]
    assert [line.strip() for line in scripts] == ["$run = Invoke-XuAsSystem @(@{ script = $CaListScript }) $limit"]
    (constant,) = re.findall(r"^\$CaListScript = '(.*)'$", text, re.M)
    assert '"' not in constant and "%" not in constant and "$a." not in constant
    # It writes its file with .NET, not through Out-File (which may cut a long line at the console's width), and fails visibly.
    assert constant.startswith("param($o) try {") and "[IO.File]::WriteAllLines($o, [string[]]@($l))" in constant
    assert constant.endswith("catch { [IO.File]::WriteAllText($o, $_.Exception.Message); exit 1 }")
    assert "$command = ($parts.ToArray() -join '; ') + '; exit 0'" in run
    # Registered as SYSTEM (New-XuSystemTask), then always unregistered and its output deleted.
    assert "$task = New-XuSystemTask $command" in run
    tail = run[run.index("Register-ScheduledTask") :]
    assert tail.index("try {") < tail.index("Start-ScheduledTask") < tail.index("} finally {")
    cleanup = tail[tail.index("} finally {") :]
    assert "Unregister-ScheduledTask -TaskName $name -TaskPath '\\' -Confirm:$false" in cleanup
    assert "if ([IO.File]::Exists($out)) { [IO.File]::Delete($out) }" in cleanup
    # A task that is still running at the time limit is stopped, and reported as such.
    assert "if ($running) { $r.timed_out = $true; $null = Stop-ScheduledTask -TaskName $name -TaskPath '\\' }" in run
    assert "Stop-Xu 'CertreqFailed' ('certreq did not finish within {0} s: {1}' -f $limit, $output)" in block
    # In the session, native stderr must not stop the agent: 'Continue' (the function's own scope) before certreq, 2>&1.
    here = squeeze(function_source(text, "Invoke-XuCertreqHere"))
    assert here.index("$ErrorActionPreference = 'Continue'") < here.index("& certreq.exe $certreqArgs 2>&1")
    assert "if ($step.needs -and -not (Test-Path -LiteralPath $step.needs)) { break }" in here
    assert "if ($r.exit_code -ne 0) { break }" in here


def check_enrolment_request_and_steps(text: str) -> None:
    block = squeeze(op_source(text, "cert_enroll"))
    # Every request value is validated before it reaches the INF file or a command line.
    assert "$template = Assert-XuName $a.template $TemplateNamePattern 'template'" in block
    assert "if ($n -isnot [string] -or $n -cnotmatch $ServerNamePattern) { Stop-Xu 'InvalidArgument' $badNames }" in block
    assert "if ($names.Count -eq 0) { Stop-Xu 'InvalidArgument' $badNames }" in block
    assert "$submit += '-config', (Assert-XuName $a.ca_config $CaConfigPattern 'ca_config')" in block
    assert "if (@(2048, 3072, 4096) -notcontains $keyLength)" in block
    assert "if (@('machine', 'caller') -cnotcontains $runAs)" in block
    # The INF is written with an explicit encoding certreq reads (UTF-16 with a BOM), never PowerShell's or .NET's default.
    assert "[IO.File]::WriteAllText($files.inf, (Format-XuRequestInf $template $names $keyLength $provider), [Text.Encoding]::Unicode)" in block
    # As the machine the CA is always named: certreq without -config would ask on a desktop the SYSTEM task does not have.
    assert "if ($runAs -eq 'machine' -and $null -eq $a.ca_config) { Stop-Xu 'InvalidArgument'" in block
    assert "if ($KeyProviders.Keys -cnotcontains $provider) { Stop-Xu 'InvalidArgument' 'key_provider must be schannel_csp or software_ksp' }" in block
    # -new, -submit, -accept in that order, in one SYSTEM task or in the session; -accept only when -submit wrote a certificate.
    new, submit, accept = (block.index(step) for step in ("@('-new', '-machine', '-q', $files.inf, $files.req)",
                                                          "$submit + @($files.req, $files.cer, $files.chain, $files.response)",
                                                          "@('-accept', '-machine', '-q', $files.cer); needs = $files.cer"))
    assert new < submit < accept
    assert "$submit = @('-submit', '-q')" in block
    assert "if ($runAs -eq 'machine') { $run = Invoke-XuAsSystem $steps $limit $id; $swept = $run.swept; $sweepError = $run.sweep_error }" in block
    assert "else { $run = Invoke-XuCertreqHere $steps }" in block
    # Non-zero: CertreqFailed; exit 0 without a certificate but with a request id: pending at the CA.
    assert block.index("if ($code -ne 0) { Stop-Xu 'CertreqFailed'") < block.index("if (-not [IO.File]::Exists($files.cer)) {")
    pending = "Stop-Xu 'EnrollPending' ('request {0} is pending at the CA: {1}' -f $Matches[1], $output)"
    # Not by certreq's "RequestId:" label, which Windows may translate: by the form of the line that quotes the id.
    assert f"if ($output -cmatch '(?m)^[^:\\r\\n]{{1,40}}:\\s*\"(\\d+)\"\\s*$') {{ {pending} }}" in block
    assert "RequestId" not in without_comments(text)
    # Every temporary file goes, however the enrolment ended.
    assert "} finally { foreach ($f in $files.Values) { if ([IO.File]::Exists($f)) { [IO.File]::Delete($f) } } }" in block
    assert block.index("[IO.File]::WriteAllText($files.inf") > block.index("try {")
    assert "if ($null -eq $new -or -not $new.HasPrivateKey) { Stop-Xu 'NotFound'" in block
    inf = function_source(text, "Format-XuRequestInf")
    # In double quotes PowerShell would expand $Windows: the signature line is a verbatim string.
    assert "'Signature=\"$Windows NT$\"'" in inf and '"Signature' not in inf
    for line in ("'Exportable = FALSE'", "'MachineKeySet = TRUE'", "'Silent = TRUE'", "+ $KeyProviders[$Provider] +",
                 "'RequestType = PKCS10'", "'KeySpec = 1'", "'2.5.29.17 = \"{text}\"'", "'_continue_ = \"dns={0}&\"' -f $n",
                 "'[RequestAttributes]', ('CertificateTemplate = \"{0}\"' -f $Template)", "('Subject = \"CN={0}\"' -f $Names[0])"):
        assert line in inf, line


def check_enrolment_values_cannot_break_a_task_command_line(text: str) -> None:
    # The config string goes onto a task's command line inside "...": no double quote, no % (Task Scheduler expands it),
    # no backslash before the closing quote. Names and templates never go there (only into the INF file).
    (config,) = re.findall(r"\$CaConfigPattern = '([^']+)'", text)
    (template,) = re.findall(r"\$TemplateNamePattern = '([^']+)'", text)
    for pattern in (config, template):
        assert '"' not in pattern and "%" not in pattern and "'" not in pattern
    assert config.endswith(r"[A-Za-z0-9 _.()-]{1,64}\z")
    documented = read(PROTOCOL_DOC)
    assert f"`{config.replace(chr(92) + 'z', '$')}`" in documented and f"`{template.replace(chr(92) + 'z', '$')}`" in documented


@pytest.mark.parametrize(
    "check",
    [
        check_cert_list_reports_sids_and_archived,
        check_pfx_import_repairs,
        check_key_grant_reports_the_sid,
        check_certreq_runs_as_system,
        check_enrolment_request_and_steps,
        check_enrolment_values_cannot_break_a_task_command_line,
    ],
)
def test_certificates(agent: str, check: Callable[[str], None]) -> None:
    check(agent)


def check_task_principals_are_sids(text: str) -> None:
    # "SYSTEM" is a name Windows translates (NT-AUTORITAET\SYSTEM, AUTORITE NT\Systeme); the principal is given by SID.
    tree = parse(text)
    users = [n for n in walk(tree.root_node) if n.type == "command_parameter" and node_text(n).strip().lower() == "-userid"]
    assert users
    for parameter in users:
        argument = parameter.next_sibling
        while argument is not None and argument.type == "command_argument_sep":
            argument = argument.next_sibling
        assert argument is not None and node_text(argument).strip() == "$SystemSid", node_text(parameter.parent or parameter)
    assert "$SystemSid = 'S-1-5-18'" in text


def test_the_task_principal_lint_finds_a_name() -> None:
    with pytest.raises(AssertionError):
        check_task_principals_are_sids("$SystemSid = 'S-1-5-18'\n$p = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount\n")


def test_every_task_runs_as_system_on_battery_too(agent: str) -> None:
    check_task_principals_are_sids(agent)
    task = squeeze(function_source(agent, "New-XuSystemTask"))
    assert "New-ScheduledTaskPrincipal -UserId $SystemSid -LogonType ServiceAccount -RunLevel Highest" in task
    assert "New-ScheduledTaskSettingsSet -StartWhenAvailable -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries" in task
    # Every task is made by it: no other place builds an action, a principal or settings.
    code = without_comments(agent)
    for cmdlet in ("New-ScheduledTaskAction", "New-ScheduledTaskPrincipal", "New-ScheduledTaskSettingsSet"):
        assert code.count(cmdlet) == 1, cmdlet
    assert "$task = New-XuSystemTask $command (New-TimeSpan -Minutes 10)" in op_source(agent, "task_register")


# --------------------------------------------------------------------------- errors: the agent reports, the controller judges


# Where the agent may look at an error's identity: the one function that reports it, and the unwrapping of PowerShell's wrappers.
IDENTITY_READERS = {"get-xuerroridentity", "get-xuinner"}
IDENTITY_MEMBERS = {"categoryinfo", "fullyqualifiederrorid", "nativeerrorcode", "hresult", "gettype"}
# CIM reads whose "nothing matched" is an error record (PowerShell's QueryJobBase): only ever run through Invoke-XuQuery.
CIM_QUERIES = {"get-netfirewallrule", "get-scheduledtask"}


def enclosing_function(node: tree_sitter.Node) -> str | None:
    parent = node.parent
    while parent is not None:
        if parent.type == "function_statement":
            found = next((c for c in parent.children if c.type == "function_name"), None)
            return node_text(found).lower() if found is not None else None
        parent = parent.parent
    return None


def query_argument_of(node: tree_sitter.Node) -> str | None:
    """The command a script block holding ``node`` is an argument of (``Invoke-XuQuery { ... }``), if any."""
    parent = node.parent
    while parent is not None:
        if parent.type == "script_block_expression":
            owner = parent.parent
            while owner is not None and owner.type != "command":
                owner = owner.parent
            if owner is not None and owner.children and owner.children[0].type == "command_name":
                return node_text(owner.children[0]).lower()
        parent = parent.parent
    return None


def check_errors_are_reported_not_judged(text: str) -> None:
    tree = parse(text)
    # An error's type, id, category or codes are read only where they are reported, never where a decision is made.
    readers = {
        f"line {n.start_point[0] + 1}: {node_text(n)}"
        for n in walk(tree.root_node)
        if n.type == "member_name" and node_text(n).lower() in IDENTITY_MEMBERS and enclosing_function(n) not in IDENTITY_READERS
    }
    assert readers == set(), "the agent judges an error itself"
    # A CIM query runs only through Invoke-XuQuery, which reports its error beside its result (Invoke-XuAsSystem polls the
    # task it registered itself: an error there is the operation's error).
    queries = [n for n in walk(tree.root_node) if n.type == "command" and n.children and n.children[0].type == "command_name"
               and node_text(n.children[0]).lower() in CIM_QUERIES]
    assert queries
    loose = [node_text(n) for n in queries if query_argument_of(n) != "invoke-xuquery" and enclosing_function(n) != "invoke-xuassystem"]
    assert loose == []
    for query in queries:
        assert "SilentlyContinue" not in node_text(query)
    # Only one place decides between errors by their .NET type: the probe's TLS fallback for an old .NET Framework.
    typed = [
        node_text(n.next_sibling).strip() for n in walk(tree.root_node)
        if n.type == "comparison_operator" and node_text(n).lower() in ("-is", "-isnot") and n.next_sibling is not None
        and node_text(n.next_sibling).strip().endswith("Exception]")
    ]
    assert typed == ["[ArgumentException]", "[NotSupportedException]"]
    assert "$refusal -isnot [ArgumentException] -and $refusal -isnot [NotSupportedException]" in op_source(text, "port_probe")


def test_the_errors_lint_finds_a_judging_agent() -> None:
    # The agent before issue 21 decided "not found" itself, from a CimException's category: the rule sees it.
    judging = (
        "function Test-XuNotFound($ErrorRecord) {\n"
        "    $ErrorRecord.CategoryInfo.Category -eq 'ObjectNotFound' -and (Get-XuInner $ErrorRecord.Exception).GetType().Name -eq 'CimException'\n"
        "}\n"
    )
    with pytest.raises(AssertionError, match="judges an error itself"):
        check_errors_are_reported_not_judged(judging)
    loose = "function Get-XuTask([string]$Name) {\n    try { Get-ScheduledTask -TaskPath '\\' } catch { throw }\n}\n"
    with pytest.raises(AssertionError):
        check_errors_are_reported_not_judged(loose)


def check_fw_get_reports_whether_rules_apply(text: str) -> None:
    block = squeeze(op_source(text, "fw_get"))
    assert "Get-XuFwQuery $group 'PersistentStore'" in block and "Get-XuFwQuery $group 'ActiveStore'" in block
    assert "Get-NetFirewallProfile -PolicyStore ActiveStore" in block
    assert "local_rules_applied = ([string]$pr.AllowLocalFirewallRules -ne 'False')" in block
    assert "[ordered]@{ rules = $rules; rules_error = $persistent.error; active_rules = $active; active_rules_error = $activeQuery.error;" in block


def check_fw_set_restores_the_group(text: str) -> None:
    block = squeeze(op_source(text, "fw_set"))
    # An error reading the group stops the call unless the controller's table calls it "not found".
    assert "if ($null -ne $query.error -and -not (Test-XuAbsent $query.error)) { throw $query.record }" in block
    # The previous rules are read before anything is removed ...
    assert block.index("$previous = @(foreach ($fr in $old) { ConvertTo-XuFwParams (ConvertFrom-XuFwRule $fr) $group })") < block.index(
        "Remove-NetFirewallRule"
    )
    # ... the removal and the additions are one try, whose catch undoes the additions and recreates them, then reports.
    body = block[block.index("try {") :]
    assert body.startswith("try { if ($old.Count -gt 0) { $null = $old | Remove-NetFirewallRule } foreach ($p in $new) {")
    assert "foreach ($p in $new) { $null = New-NetFirewallRule @p; [void]$added.Add($p.Name) } } catch {" in body
    handler = body[body.index("} catch {") :]
    assert handler.index("Remove-NetFirewallRule -Name $n") < handler.index("New-NetFirewallRule @p") < handler.index("throw $failure")


@pytest.mark.parametrize("check", [check_errors_are_reported_not_judged, check_fw_get_reports_whether_rules_apply, check_fw_set_restores_the_group])
def test_firewall_and_tasks(agent: str, check: Callable[[str], None]) -> None:
    check(agent)


# --------------------------------------------------------------------------- service restart and probe


def check_service_restart_waits_and_restores_dependents(text: str) -> None:
    block = squeeze(op_source(text, "service_restart"))
    # ServiceController.Stop() would stop running dependents itself, 30 s each: they are stopped first, within our limit ...
    stop_dependents = block.index("foreach ($d in $sc.DependentServices) {")
    assert "if ($d.Status -ne 'StopPending') { [void]$stopped.Add($d); $d.Stop() }" in block
    assert "Wait-XuServiceLeaves $d 'Running', 'StopPending', 'StartPending', 'Paused', 'PausePending', 'ContinuePending' $sw $limit" in block
    start_pending = block.index("Wait-XuServiceLeaves $sc 'StartPending' $sw $limit")
    stop = block.index("$sc.Stop()")
    assert start_pending < stop_dependents < stop
    # ... a dependent that does not stop leaves the service alone ...
    assert "if ($null -eq $startError) { if ($sc.Status -ne 'Stopped' -and $sc.Status -ne 'StopPending') { $sc.Stop() }" in block
    # Start only on a stopped service; StopPending at the time limit is reported, not started.
    guard = block.index("if ($sc.Status -ne 'Stopped') { $startError = 'the service did not stop within {0} s ({1})' -f $limit, $sc.Status }")
    assert guard < block.index("$sc.Start()")
    # ... and every dependent stopped here is started again in a finally, whatever happened.
    restart = (
        "finally { for ($i = $stopped.Count - 1; $i -ge 0; $i--) { $d = $stopped[$i]; $d.Refresh();"
        " if ($d.Status -eq 'Stopped') { try { $d.Start() } catch { $null = $_ } } } }"
    )
    assert restart in block
    assert "dependents = @(foreach ($d in $stopped) { [ordered]@{ name = [string]$d.ServiceName; state = $d.Status.ToString() } })" in block


def check_service_types_are_loaded_first(text: str) -> None:
    # [System.ServiceProcess.ServiceController] resolves only once its assembly is loaded, and a -NoProfile session has not
    # loaded it: the agent loads it among its first statements, before any function can run.
    tree = parse(text)
    statements = next(c for c in tree.root_node.children if c.type == "statement_list")
    top = [node_text(c).strip() for c in statements.children if c.type not in ("comment", "empty_statement")]
    assert "Add-Type -AssemblyName System.ServiceProcess" in top
    loaded = top.index("Add-Type -AssemblyName System.ServiceProcess")
    first_function = next(i for i, c in enumerate(top) if c.lower().startswith("function "))
    assert loaded < first_function
    assert any("[System.ServiceProcess." in line for line in top[first_function:])


def check_probe_offers_the_os_default(text: str) -> None:
    block = squeeze(op_source(text, "port_probe"))
    first = block.index("$ssl.AuthenticateAsClient($serverName, $null, [Security.Authentication.SslProtocols]::None, $false)")
    fallback = block.index("$ssl.AuthenticateAsClient($serverName, $null, 'Tls, Tls11, Tls12', $false)")
    refusal = block.index("if ($refusal -isnot [ArgumentException] -and $refusal -isnot [NotSupportedException]) { throw }")
    assert first < refusal < fallback
    assert block.count("AuthenticateAsClient(") == 2


@pytest.mark.parametrize(
    "check", [check_service_restart_waits_and_restores_dependents, check_service_types_are_loaded_first, check_probe_offers_the_os_default]
)
def test_service_and_probe(agent: str, check: Callable[[str], None]) -> None:
    check(agent)


# --------------------------------------------------------------------------- Constrained Language Mode


CLM_MESSAGE = "xtractuniversal.tls needs PowerShell's FullLanguage mode; this session runs in {0} (AppLocker or WDAC policy)"


def first_statement(text: str) -> tree_sitter.Node:
    root = parse(text).root_node
    statements = next(c for c in root.children if c.type == "statement_list")
    return next(c for c in statements.children if c.type not in ("comment", "empty_statement"))


def check_bootstrap_checks_the_language_mode_first(text: str) -> None:
    first = first_statement(text)
    assert first.type == "if_statement", node_text(first)
    source = node_text(first)
    assert source.startswith("if ($ExecutionContext.SessionState.LanguageMode -ne 'FullLanguage') { throw (")
    assert f'"{CLM_MESSAGE}" -f $ExecutionContext.SessionState.LanguageMode' in source
    # Constrained Language Mode forbids method calls on most types, ::new and Add-Type: none of them before or in the check.
    before = text[: first.end_byte]
    assert [n for n in walk(first) if n.type == "invokation_expression"] == []
    assert "::" not in before and "Add-Type" not in before


def test_bootstrap_checks_the_language_mode_first() -> None:
    check_bootstrap_checks_the_language_mode_first(read(BOOTSTRAP))
    doc = read(PROTOCOL_DOC).replace("\n", " ")
    assert CLM_MESSAGE.replace("{0}", "<mode>") in squeeze(doc)


def test_the_language_mode_check_finds_method_calls() -> None:
    with pytest.raises(AssertionError):
        check_bootstrap_checks_the_language_mode_first("# b\n$x = [Collections.Generic.List[string]]::new()\nif ($a) { }\n")
