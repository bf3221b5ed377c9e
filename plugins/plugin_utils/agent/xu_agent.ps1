# xtractuniversal.tls agent 1
param($Request)
# How long the agent runs: the answer says it with the host's time, so the controller can tell the host's clock.
$AgentWatch = [Diagnostics.Stopwatch]::StartNew()
# The host side of docs/agent-protocol.md, for Windows PowerShell 5.1 on .NET Framework 4.6.2+.
# Its only output is one JSON object (the answer): every other output is discarded or silenced.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$WarningPreference = 'SilentlyContinue'
$VerbosePreference = 'SilentlyContinue'
$InformationPreference = 'SilentlyContinue'
Set-StrictMode -Off
# [System.ServiceProcess.ServiceController] is not resolvable before its assembly is loaded, and nothing loads it earlier.
Add-Type -AssemblyName System.ServiceProcess

# \z, not $: $ also matches before a final newline, which must not reach a path or a command line.
$GroupTaskPattern = '^[A-Za-z0-9 ._-]{1,64}\z'
$JournalNamePattern = '^[A-Za-z0-9_.-]{1,64}\z'
# A DNS name (it goes into SNI and the Host header): labels of 1 to 63 letters, digits, - and _, at most 253 characters.
$ServerNamePattern = '^(?=.{1,253}\z)[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*\z'
# A template's name goes into an INF file; host\CA name onto a task's command line (Task Scheduler expands %: none, no ").
$TemplateNamePattern = '^[A-Za-z0-9 ._-]{1,64}\z'
$CaConfigPattern = '^[A-Za-z0-9_.-]{1,253}\\[A-Za-z0-9 _.()-]{1,64}\z'
# The key providers cert_enroll offers: .NET Framework's X509Certificate2.PrivateKey is null for a CNG (KSP) key, so the CSP is the default.
$KeyProviders = @{
    'schannel_csp' = @('ProviderName = "Microsoft RSA SChannel Cryptographic Provider"', 'ProviderType = 12')
    'software_ksp' = @('ProviderName = "Microsoft Software Key Storage Provider"')
}
# Run as the machine (a WinRM logon cannot reach AD): each enterprise CA of the forest, as host\CA name|template,template,...,
# written to the file it is given by .NET (Out-File, behind *>, may cut lines at the console's width), or the error's text.
$CaListScript = 'param($o) try { $c = ([ADSI]''LDAP://RootDSE'').configurationNamingContext; $l = foreach ($e in ([ADSI](''LDAP://CN=Enrollment Services,CN=Public Key Services,CN=Services,'' + $c)).Children) { [string]$e.dNSHostName + ''\'' + [string]$e.cn + ''|'' + (@($e.certificateTemplates) -join '','') }; [IO.File]::WriteAllLines($o, [string[]]@($l)) } catch { [IO.File]::WriteAllText($o, $_.Exception.Message); exit 1 }'
$ProgramData = [Environment]::GetFolderPath('CommonApplicationData')
$JournalDir = [IO.Path]::Combine($ProgramData, 'xtractuniversal.tls')
$Utf8NoBom = [Text.UTF8Encoding]::new($false)
# Decoding with this one throws on bytes that are not UTF-8, instead of replacing them with U+FFFD.
$Utf8Strict = [Text.UTF8Encoding]::new($false, $true)
$Utf8Bom = [byte[]](0xEF, 0xBB, 0xBF)
# Accounts whose logon holds fixed groups (docs/agent-protocol.md, Accounts). Win32_Service spells them these ways.
$SystemSid = 'S-1-5-18'
# Who may own and use the collection's folder in ProgramData: SYSTEM and Administrators.
$TrustedSids = $SystemSid, 'S-1-5-32-544'
$ServiceAccountGroups = 'S-1-1-0', 'S-1-5-11', 'S-1-5-32-545', 'S-1-5-6'
$BuiltinAccounts = @{
    'localsystem' = $SystemSid; 'nt authority\system' = $SystemSid
    'nt authority\localservice' = 'S-1-5-19'; 'nt authority\local service' = 'S-1-5-19'
    'nt authority\networkservice' = 'S-1-5-20'; 'nt authority\network service' = 'S-1-5-20'
}
# The SYSTEM tasks certreq runs in: the collection's prefix and a GUID, nothing else (the sweep removes only these).
$CertreqTaskPattern = '^xtractuniversal\.tls certreq [0-9a-f]{32}\z'
# Task Scheduler's LastTaskResult while a task runs (SCHED_S_TASK_RUNNING) or before it has run (SCHED_S_TASK_HAS_NOT_RUN).
$TaskStillRunning = 0x41301, 0x41303

function Stop-Xu([string]$Type, [string]$Message) {
    $e = [Exception]::new($Message)
    $e.Data['xu_type'] = $Type
    throw $e
}

function Get-XuInner($Ex) {
    # PowerShell wraps the exceptions of .NET calls; the inner one names the real failure.
    $wrappers = 'MethodInvocationException', 'GetValueInvocationException', 'SetValueInvocationException', 'TargetInvocationException', 'ActionPreferenceStopException'
    while ($null -ne $Ex.InnerException -and $wrappers -contains $Ex.GetType().Name) { $Ex = $Ex.InnerException }
    $Ex
}

function Get-XuMessage($Ex) {
    $parts = [Collections.ArrayList]::new()
    for ($e = Get-XuInner $Ex; $null -ne $e; $e = $e.InnerException) { if ($parts -notcontains $e.Message) { [void]$parts.Add($e.Message) } }
    $parts -join ' '
}

function Assert-XuName($Value, [string]$Pattern, [string]$What) {
    if ($Value -isnot [string] -or $Value -cnotmatch $Pattern) { Stop-Xu 'InvalidArgument' ('{0} must match {1}' -f $What, $Pattern) }
    $Value
}

function Assert-XuPath($Value, [string]$What) {
    if ($Value -isnot [string] -or -not [IO.Path]::IsPathRooted([string]$Value)) { Stop-Xu 'InvalidArgument' ('{0} must be an absolute path' -f $What) }
    $Value
}

function ConvertTo-XuThumbprint($Value) {
    # Thumbprints copied from the certificate dialog carry spaces and an invisible U+200E.
    $t = ([string]$Value -replace '[^0-9A-Fa-f]', '').ToUpperInvariant()
    if ($t.Length -ne 40) { Stop-Xu 'InvalidArgument' 'a thumbprint has 40 hex digits' }
    $t
}

function Format-XuTime($Value) {
    if ($null -eq $Value) { return $null }
    ([DateTime]$Value).ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", [Globalization.CultureInfo]::InvariantCulture)
}

function Get-XuTrigger($DelaySeconds) {
    # The host's own now plus the delay, rounded up to the whole second a trigger keeps: never the controller's clock.
    if ($null -eq $DelaySeconds -or $DelaySeconds -is [string] -or $DelaySeconds -is [bool]) { Stop-Xu 'InvalidArgument' 'delay_s must be a number of seconds above 0, at most 604800' }
    $delay = [double]$DelaySeconds
    if (-not ($delay -gt 0 -and $delay -le 604800)) { Stop-Xu 'InvalidArgument' 'delay_s must be a number of seconds above 0, at most 604800' }
    $at = [DateTime]::UtcNow.AddSeconds($delay)
    $rest = $at.Ticks % [TimeSpan]::TicksPerSecond
    if ($rest -ne 0) { $at = $at.AddTicks([TimeSpan]::TicksPerSecond - $rest) }
    $at
}

function Get-XuSha256([byte[]]$Bytes) {
    $h = [Security.Cryptography.SHA256]::Create()
    try { ([BitConverter]::ToString($h.ComputeHash($Bytes)) -replace '-', '').ToLowerInvariant() } finally { $h.Dispose() }
}

function Read-XuBytes([string]$Path) {
    # Shared read/write/delete: the service may hold its settings open.
    $fs = [IO.FileStream]::new($Path, 'Open', 'Read', 'ReadWrite, Delete')
    try { $ms = [IO.MemoryStream]::new(); $fs.CopyTo($ms); , $ms.ToArray() } finally { $fs.Dispose() }
}

function Test-XuBom([byte[]]$Bytes) {
    $Bytes.Length -ge 3 -and $Bytes[0] -eq 0xEF -and $Bytes[1] -eq 0xBB -and $Bytes[2] -eq 0xBF
}

function ConvertFrom-XuBytes([byte[]]$Bytes) {
    $o = 0
    if (Test-XuBom $Bytes) { $o = 3 }
    [Text.Encoding]::UTF8.GetString($Bytes, $o, $Bytes.Length - $o)
}

function Write-XuAtomic([string]$Path, [byte[]]$Bytes, [string]$Backup) {
    # Written beside the target, then swapped in: File.Replace keeps the target's ACL. It always gets a backup name (its own
    # when the caller wants none; never $null, which would reach .NET as ""): it can fail after it has moved the original
    # to the backup (ERROR_UNABLE_TO_MOVE_REPLACEMENT_2), and then the original is moved back before anything is deleted.
    $dir = [IO.Path]::GetDirectoryName($Path)
    if (-not [IO.Directory]::Exists($dir)) { $null = [IO.Directory]::CreateDirectory($dir) }
    $tmp = $Path + '.xutls.tmp'
    $keep = $Backup
    if (-not $keep) { $keep = $Path + '.xutls.bak' }
    try {
        [IO.File]::WriteAllBytes($tmp, $Bytes)
        if (-not [IO.File]::Exists($Path)) { [IO.File]::Move($tmp, $Path); return }
        if (-not $Backup -and [IO.File]::Exists($keep)) { [IO.File]::Delete($keep) }
        try { [IO.File]::Replace($tmp, $Path, $keep) }
        catch {
            if (-not [IO.File]::Exists($Path)) {
                # The original is the backup now: back into place (a rename keeps its ACL), else the new bytes are.
                try { [IO.File]::Move($keep, $Path) } catch { if ([IO.File]::Exists($tmp)) { [IO.File]::Move($tmp, $Path) } }
            }
            throw
        }
        if (-not $Backup -and [IO.File]::Exists($keep)) { [IO.File]::Delete($keep) }
    } finally {
        # The temporary file goes only once the target is in place: it may be the last copy of the content.
        if ([IO.File]::Exists($tmp) -and [IO.File]::Exists($Path)) { [IO.File]::Delete($tmp) }
    }
}

function New-XuJournalSecurity {
    # SYSTEM and Administrators only, nothing inherited from ProgramData (where every user may create files).
    $ds = [Security.AccessControl.DirectorySecurity]::new()
    $ds.SetAccessRuleProtection($true, $false)
    foreach ($s in $TrustedSids) {
        $sid = [Security.Principal.SecurityIdentifier]::new($s)
        $ds.AddAccessRule([Security.AccessControl.FileSystemAccessRule]::new($sid, 'FullControl', 'ContainerInherit, ObjectInherit', 'None', 'Allow'))
    }
    $ds
}

function Assert-XuJournalDir {
    # Every user may create folders in ProgramData, and whoever creates one owns it: a folder found there is used only when it
    # is no link, SYSTEM or Administrators own it, and its protected DACL lets nobody else in. A trusted owner's folder with an
    # open DACL is closed, and then every file in it must have a trusted owner; any other folder is refused, untouched.
    if (-not [IO.Directory]::Exists($JournalDir)) { return }
    $refused = 'Nothing was read or written there; remove it (an administrator can), then run again'
    if (([IO.File]::GetAttributes($JournalDir) -band [IO.FileAttributes]::ReparsePoint) -ne 0) { Stop-Xu 'UntrustedFolder' ('{0} is a link (reparse point), not a folder. {1}' -f $JournalDir, $refused) }
    $sec = [IO.Directory]::GetAccessControl($JournalDir, 'Owner, Access')
    $owner = $sec.GetOwner([Security.Principal.SecurityIdentifier]).Value
    if ($TrustedSids -notcontains $owner) { Stop-Xu 'UntrustedFolder' ('{0} is owned by {1}, not by SYSTEM or Administrators: another user may have made it first. {2}' -f $JournalDir, $owner, $refused) }
    $others = @(foreach ($rule in $sec.GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier])) { if ($rule.AccessControlType -eq 'Allow' -and $TrustedSids -notcontains $rule.IdentityReference.Value) { $rule } })
    if ($sec.AreAccessRulesProtected -and $others.Count -eq 0) { return }
    [IO.Directory]::SetAccessControl($JournalDir, (New-XuJournalSecurity))
    # While it was open anybody could add files: only those of SYSTEM, Administrators or this account are used.
    $owners = @($TrustedSids) + @([Security.Principal.WindowsIdentity]::GetCurrent().User.Value)
    foreach ($f in [IO.Directory]::GetFiles($JournalDir)) {
        $fileOwner = [IO.File]::GetAccessControl($f, 'Owner').GetOwner([Security.Principal.SecurityIdentifier]).Value
        if ($owners -notcontains $fileOwner) { Stop-Xu 'UntrustedFolder' ('{0} is owned by {1}, not by SYSTEM or Administrators: another user put it there while the folder let them. {2}' -f $f, $fileOwner, $refused) }
    }
}

function Initialize-XuJournalDir {
    # Made for SYSTEM and Administrators only; one that was there already (or that appeared meanwhile) is checked.
    if (-not [IO.Directory]::Exists($JournalDir)) {
        # Owned by Administrators whoever creates it, even where policy makes the creator the owner.
        $ds = New-XuJournalSecurity
        $ds.SetOwner([Security.Principal.SecurityIdentifier]::new('S-1-5-32-544'))
        $null = [IO.Directory]::CreateDirectory($JournalDir, $ds)
    }
    Assert-XuJournalDir
}

function Open-XuStore([string]$Name, [string]$Flags) {
    if (-not $Name) { $Name = 'My' }
    $s = [System.Security.Cryptography.X509Certificates.X509Store]::new($Name, 'LocalMachine')
    $s.Open($Flags)
    $s
}

function Find-XuCert($Store, [string]$Thumbprint) {
    foreach ($c in $Store.Certificates) { if ($c.Thumbprint -eq $Thumbprint) { return $c } }
}

function Test-XuIntermediate($Cert) {
    # A CA by its basic constraints and not self-signed: a root is never made trusted on the side.
    if ([Convert]::ToBase64String($Cert.SubjectName.RawData) -eq [Convert]::ToBase64String($Cert.IssuerName.RawData)) { return $false }
    foreach ($ext in $Cert.Extensions) {
        if ($ext.Oid.Value -eq '2.5.29.19') { return [System.Security.Cryptography.X509Certificates.X509BasicConstraintsExtension]::new($ext, $ext.Critical).CertificateAuthority }
    }
    $false
}

function Get-XuKeyFile([System.Security.Cryptography.X509Certificates.X509Certificate2]$Cert) {
    # Machine keys are files named by the key's unique name: CNG keys in Crypto\Keys, CSP keys in Crypto\RSA\MachineKeys.
    # Which class .NET returns for a CSP key differs between Framework versions, so the file found decides.
    $r = @{ provider = $null; file = $null }
    $key = $null
    try {
        try { $key = [System.Security.Cryptography.X509Certificates.RSACertificateExtensions]::GetRSAPrivateKey($Cert) } catch { $key = $null }
        if ($null -eq $key) { $key = [System.Security.Cryptography.X509Certificates.ECDsaCertificateExtensions]::GetECDsaPrivateKey($Cert) }
        $unique = $null
        if ($key -is [System.Security.Cryptography.RSACng] -or $key -is [System.Security.Cryptography.ECDsaCng]) { $r.provider = 'CNG'; $unique = $key.Key.UniqueName }
        elseif ($key -is [System.Security.Cryptography.ICspAsymmetricAlgorithm]) { $r.provider = 'CSP'; $unique = $key.CspKeyContainerInfo.UniqueKeyContainerName }
        if ($unique) {
            foreach ($place in @(@('CNG', 'Microsoft\Crypto\Keys'), @('CSP', 'Microsoft\Crypto\RSA\MachineKeys'))) {
                $candidate = [IO.Path]::Combine($ProgramData, $place[1], $unique)
                if ([IO.File]::Exists($candidate)) { $r.provider = $place[0]; $r.file = $candidate; break }
            }
        }
    } catch { $r.file = $null } finally { if ($null -ne $key) { $key.Dispose() } }
    $r
}

function Get-XuRightsName([int]$Value) {
    # GENERIC_ALL (0x10000000) or all FullControl bits: FullControl. The Read bits or GENERIC_READ (bit 31, so negative): Read.
    if (($Value -band 0x1F01FF) -eq 0x1F01FF -or ($Value -band 0x10000000) -ne 0) { return 'FullControl' }
    if (($Value -band 0x20089) -eq 0x20089 -or $Value -lt 0) { return 'Read' }
    ([System.Security.AccessControl.FileSystemRights]$Value).ToString()
}

function Get-XuKeyInfo($Cert) {
    # An odd key never fails the listing: the provider is reported when known, the ACL is null when unreadable.
    $k = Get-XuKeyFile $Cert
    $acl = $null
    if ($k.file) {
        try {
            $acl = [Collections.ArrayList]::new()
            foreach ($rule in [IO.File]::GetAccessControl($k.file, 'Access').GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier])) {
                # The SID always; the name as Windows gives it when the SID translates (a deleted account's does not).
                $sid = $rule.IdentityReference
                $identity = $sid.Value
                try { $identity = $sid.Translate([Security.Principal.NTAccount]).Value } catch { $null = $_ }
                [void]$acl.Add([ordered]@{ identity = $identity; sid = $sid.Value; rights = (Get-XuRightsName ([int]$rule.FileSystemRights)); type = $rule.AccessControlType.ToString() })
            }
        } catch { $acl = $null }
    }
    [ordered]@{ provider = $k.provider; acl = $acl }
}

function Read-XuFileEntry([string]$Path, [string]$Dir) {
    # content is the text without its BOM, or null when the bytes are not UTF-8 (the hash is reported all the same).
    $f = [ordered]@{ path = $Path; full_path = $null; exists = $false; content = $null; bom = $false; utf8_valid = $false; sha256 = $null; backups = @() }
    if ([IO.Path]::IsPathRooted($Path)) { $f.full_path = $Path } elseif ($Dir) { $f.full_path = [IO.Path]::Combine($Dir, $Path) }
    if (-not $f.full_path) { return $f }
    # The backups beside the file (<name>.<anything>.bak), by full path: [IO.Directory] takes the pattern literally but for * and ?.
    $parent = [IO.Path]::GetDirectoryName($f.full_path)
    if ([IO.Directory]::Exists($parent)) {
        $f.backups = @([IO.Directory]::GetFiles($parent, [IO.Path]::GetFileName($f.full_path) + '.*.bak') | Sort-Object)
    }
    if (-not [IO.File]::Exists($f.full_path)) { return $f }
    $b = Read-XuBytes $f.full_path
    $f.exists = $true; $f.sha256 = Get-XuSha256 $b; $f.bom = Test-XuBom $b
    $o = 0
    if ($f.bom) { $o = 3 }
    try { $f.content = $Utf8Strict.GetString($b, $o, $b.Length - $o); $f.utf8_valid = $true } catch { $f.content = $null }
    $f
}

function Get-XuAccountSid([string]$Account) {
    # Win32_Service.StartName translated to a SID; null when Windows cannot translate it (never an error).
    if (-not $Account) { return $null }
    $builtin = $BuiltinAccounts[$Account.ToLowerInvariant()]
    if ($builtin) { return $builtin }
    $name = $Account
    if ($name.StartsWith('.\')) { $name = [Environment]::MachineName + $name.Substring(1) }
    try { [Security.Principal.NTAccount]::new($name).Translate([Security.Principal.SecurityIdentifier]).Value } catch { $null }
}

function Get-XuAccountGroups([string]$Account, [string]$Sid) {
    # The SIDs of the groups a logon of the account holds (docs/agent-protocol.md, Accounts); null when unknown.
    # Lists are returned with the unary comma, so a list of one stays a list.
    if (-not $Sid) { return $null }
    if ($Sid -eq $SystemSid) { return , @('S-1-5-32-544', 'S-1-1-0', 'S-1-5-11') }
    if ($Sid -in 'S-1-5-19', 'S-1-5-20' -or $Sid.StartsWith('S-1-5-80-')) { return , @($ServiceAccountGroups) }
    try {
        if ($Account.Contains('@')) {
            # A domain account by UPN: its token groups, as the domain reports them (S4U, no password needed).
            $id = [Security.Principal.WindowsIdentity]::new($Account)
            try { return , @(foreach ($g in $id.Groups) { [string]$g.Value }) } finally { $id.Dispose() }
        }
        # A local account (.\svc, HOST\svc): the local groups that list it. Any other: unknown.
        $prefix = $Account.Split('\')[0]
        if (-not $Account.Contains('\') -or ($prefix -ne '.' -and $prefix -ne [Environment]::MachineName)) { return $null }
        $groups = [Collections.ArrayList]::new()
        foreach ($g in $ServiceAccountGroups) { [void]$groups.Add($g) }
        foreach ($lg in @(Get-LocalGroup)) {
            $members = @(foreach ($m in @(Get-LocalGroupMember -Group $lg)) { [string]$m.SID.Value })
            if ($members -contains $Sid) { [void]$groups.Add([string]$lg.SID.Value) }
        }
        , $groups.ToArray()
    } catch { $null }
}

function Get-XuDependents([string]$Name) {
    try { foreach ($d in [System.ServiceProcess.ServiceController]::new($Name).DependentServices) { [string]$d.ServiceName } } catch { $null = $_ }
}

function Get-XuExePath([string]$CommandLine) {
    if ($CommandLine -match '^\s*"([^"]+)"' -or $CommandLine -match '^\s*(.+?\.exe)(\s|\z)' -or $CommandLine -match '^\s*(\S+)') { return $Matches[1] }
}

function Test-XuPort([string]$HostName, [int]$Port, [int]$TimeoutMs) {
    $c = [Net.Sockets.TcpClient]::new()
    try {
        $ar = $c.BeginConnect($HostName, $Port, $null, $null)
        if (-not $ar.AsyncWaitHandle.WaitOne($TimeoutMs)) { return $false }
        $c.EndConnect($ar)
        $true
    } catch { $false } finally { $c.Close() }
}

function ConvertFrom-XuChunked([string]$Text) {
    # $Text is Latin-1 decoded (one char per byte), so lengths are byte counts.
    $out = [Text.StringBuilder]::new()
    $i = 0
    while ($i -lt $Text.Length) {
        $e = $Text.IndexOf("`r`n", $i)
        if ($e -lt 0) { break }
        $size = [Convert]::ToInt32(($Text.Substring($i, $e - $i) -split ';')[0].Trim(), 16)
        if ($size -le 0) { break }
        $null = $out.Append($Text, $e + 2, [Math]::Min($size, $Text.Length - $e - 2))
        $i = $e + 4 + $size
    }
    $out.ToString()
}

function Get-XuErrorIdentity($ErrorRecord) {
    # The error as Windows names it, never what it means: the controller judges it (plugins/plugin_utils/host/_windows_errors.py).
    # type and message as ever; the names and numbers Windows does not translate beside them.
    $ex = Get-XuInner $ErrorRecord.Exception
    $links = [Collections.ArrayList]::new()
    for ($e = $ex; $null -ne $e -and $links.Count -lt 4; $e = $e.InnerException) {
        $native = $null
        if ($null -ne $e.NativeErrorCode) { $native = [int]$e.NativeErrorCode }
        [void]$links.Add([ordered]@{ exception = $e.GetType().FullName; hresult = $e.HResult; native_code = $native })
    }
    $inner = @(for ($i = 1; $i -lt $links.Count; $i++) { $links[$i] })
    $r = [ordered]@{ type = $ex.GetType().Name; message = (Get-XuMessage $ex); exception = $links[0].exception; fqid = $null; category = $null; hresult = $links[0].hresult; native_code = $links[0].native_code; inner = $inner }
    if ($ErrorRecord -is [Management.Automation.ErrorRecord]) { $r.fqid = [string]$ErrorRecord.FullyQualifiedErrorId; $r.category = $ErrorRecord.CategoryInfo.Category.ToString() }
    $r
}

function Invoke-XuQuery([scriptblock]$Query) {
    # A read's objects, or the error record it raised: whether that error means "none" is the controller's call.
    try { @{ items = @(& $Query); error = $null; record = $null } } catch { @{ items = @(); error = (Get-XuErrorIdentity $_); record = $_ } }
}

function Test-XuAbsent($Identity) {
    # Whether an error is one the controller's table calls "not found" (request absent_errors): compared, not judged.
    foreach ($m in $AbsentErrors) {
        $types = @($Identity.exception) + @(foreach ($i in $Identity.inner) { $i.exception })
        $fqid = ([string]$Identity.fqid).Split(',')[0]
        if ($m.exception -and $types -notcontains [string]$m.exception) { continue }
        if ($m.fqid -and -not $fqid.StartsWith([string]$m.fqid, [StringComparison]::OrdinalIgnoreCase)) { continue }
        if ($m.category -and [string]$m.category -ne $Identity.category) { continue }
        return $true
    }
    $false
}

function Wait-XuServiceLeaves($Service, [string[]]$States, $Watch, [double]$LimitS) {
    # Polls (a refreshed Status each time) while the service is in one of $States, up to $LimitS on $Watch.
    $Service.Refresh()
    while ($States -contains $Service.Status.ToString() -and $Watch.Elapsed.TotalSeconds -lt $LimitS) {
        Start-Sleep -Milliseconds 250
        $Service.Refresh()
    }
}

function Get-XuTaskQuery([string]$Name) {
    Invoke-XuQuery { Get-ScheduledTask -TaskName $Name -TaskPath '\' }
}

function Get-XuFwQuery([string]$Group, [string]$Store) {
    Invoke-XuQuery { Get-NetFirewallRule -Group $Group -PolicyStore $Store }
}

function ConvertFrom-XuFwRule($Rule) {
    $pf = Get-NetFirewallPortFilter -AssociatedNetFirewallRule $Rule
    $af = Get-NetFirewallAddressFilter -AssociatedNetFirewallRule $Rule
    [ordered]@{
        name = [string]$Rule.Name; display_name = [string]$Rule.DisplayName; direction = $Rule.Direction.ToString()
        action = $Rule.Action.ToString(); enabled = ($Rule.Enabled.ToString() -eq 'True'); protocol = [string]$pf.Protocol
        local_ports = @(foreach ($v in $pf.LocalPort) { [string]$v }); remote_addresses = @(foreach ($v in $af.RemoteAddress) { [string]$v })
    }
}

function ConvertTo-XuFwParams($Rule, [string]$Group) {
    # The parameters of New-NetFirewallRule for one rule as fw_get reports it (or fw_set receives it).
    $p = @{ Name = [string]$Rule.name; DisplayName = [string]$Rule.display_name; Group = $Group; Direction = 'Inbound'; Action = 'Allow'; Protocol = 'TCP'; Enabled = 'True' }
    if ($Rule.direction) { $p.Direction = [string]$Rule.direction }
    if ($Rule.action) { $p.Action = [string]$Rule.action }
    if ($Rule.protocol) { $p.Protocol = [string]$Rule.protocol }
    if ($Rule.enabled -eq $false) { $p.Enabled = 'False' }
    $ports = [string[]]@(foreach ($v in $Rule.local_ports) { [string]$v })
    if ($ports.Count -gt 0) { $p.LocalPort = $ports }
    $remote = [string[]]@(foreach ($v in $Rule.remote_addresses) { [string]$v })
    if ($remote.Count -gt 0) { $p.RemoteAddress = $remote }
    $p
}

function New-XuSystemTask([string]$Command, [TimeSpan]$Limit) {
    # Every task the agent registers: powershell.exe running $Command (built by the caller from validated values only) as SYSTEM.
    @{
        Action = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument ('-NoProfile -NonInteractive -ExecutionPolicy Bypass -Command "' + $Command + '"')
        # By SID: the name SYSTEM is translated on other Windows languages (NT-AUTORITAET\SYSTEM), S-1-5-18 is not.
        Principal = New-ScheduledTaskPrincipal -UserId $SystemSid -LogonType ServiceAccount -RunLevel Highest
        # A start missed while the host was down still happens; on battery power it starts and is not stopped.
        Settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -ExecutionTimeLimit $Limit
    }
}

function ConvertTo-XuExitCode($Value) {
    # LastTaskResult is unsigned; certreq's codes are HRESULTs, which $LASTEXITCODE shows signed.
    [BitConverter]::ToInt32([BitConverter]::GetBytes([uint32]$Value), 0)
}

function Remove-XuStaleCertreq {
    # A call killed while certreq ran (Ctrl-C, a cancelled job) leaves its SYSTEM task and files behind. Swept: only this agent's
    # tasks (the exact name pattern), only past the time their description gives (the limit no live call outlasts), and the
    # files of the swept tasks; files without a task only when a day old. Whatever fails is reported, the sweep never fails a call.
    $swept = [Collections.ArrayList]::new()
    $now = [DateTime]::UtcNow
    $query = Invoke-XuQuery { Get-ScheduledTask -TaskName 'xtractuniversal.tls certreq *' -TaskPath '\' }
    $tasks = @(foreach ($t in $query.items) { if ([string]$t.TaskName -cmatch $CertreqTaskPattern) { $t } })
    $sweepError = $query.error
    try {
        foreach ($t in $tasks) {
            # A task of an agent before the sweep carries no time: it goes once it is not running.
            $until = $now
            if ([string]$t.Description -cmatch '^xtractuniversal\.tls certreq until (\S+)\z') { $until = ConvertFrom-XuTime $Matches[1] }
            elseif ($t.State.ToString() -in 'Running', 'Queued') { continue }
            if ($until -gt $now) { continue }
            if ($t.State.ToString() -eq 'Running') { $null = Stop-ScheduledTask -TaskName $t.TaskName -TaskPath '\' }
            $null = Unregister-ScheduledTask -TaskName $t.TaskName -TaskPath '\' -Confirm:$false
            [void]$swept.Add([string]$t.TaskName)
        }
        $live = @(foreach ($t in $tasks) { if ($swept -notcontains [string]$t.TaskName) { ([string]$t.TaskName).Substring(28) } })
        if ([IO.Directory]::Exists($JournalDir)) {
            foreach ($f in [IO.Directory]::GetFiles($JournalDir)) {
                if ([IO.Path]::GetFileName($f) -cnotmatch '^(certreq|enrol)-([0-9a-f]{32})\.(txt|inf|req|cer|p7b|rsp)\z') { continue }
                $id = $Matches[2]
                if ($live -contains $id) { continue }
                if ($swept -contains ('xtractuniversal.tls certreq ' + $id) -or [IO.File]::GetLastWriteTimeUtc($f) -lt $now.AddDays(-1)) { [IO.File]::Delete($f) }
            }
        }
    } catch { $sweepError = Get-XuErrorIdentity $_ }
    @{ swept = $swept.ToArray(); error = $sweepError }
}

function Invoke-XuAsSystem([object[]]$Steps, [int]$TimeoutS, [string]$Id) {
    # certreq in a one-shot task as SYSTEM, its output in a file of the journal folder (SYSTEM and Administrators only).
    # The task's name and the file's name are fixed but for a GUID; the task and the file are always removed again, and what a
    # killed call left behind is swept first. Steps: certreq's arguments (validated values) and a file it needs; one script ends
    # at the first non-zero exit code, or with 0 before a step whose file is missing.
    Initialize-XuJournalDir
    $sweep = Remove-XuStaleCertreq
    if (-not $Id) { $Id = [Guid]::NewGuid().ToString('N') }
    $name = 'xtractuniversal.tls certreq ' + $Id
    $out = [IO.Path]::Combine($JournalDir, 'certreq-' + $Id + '.txt')
    $parts = [Collections.ArrayList]::new()
    foreach ($step in $Steps) {
        # The first output replaces, the others append.
        $redirect = '*>>'
        if ($parts.Count -eq 0) { $redirect = '*>' }
        # A constant script of the agent's own (no request value in it; it writes the output file itself), or certreq with
        # validated, quoted arguments.
        if ($step.script) { [void]$parts.Add(("& {{ {0} }} {1}" -f $step.script, (Format-XuQuoted $out))); continue }
        $quoted = @(foreach ($value in $step.arguments) { Format-XuQuoted ([string]$value) }) -join ' '
        if ($step.needs) { [void]$parts.Add(("if (-not (Test-Path -LiteralPath {0})) {{ exit 0 }}" -f (Format-XuQuoted $step.needs))) }
        [void]$parts.Add(("& certreq.exe {0} {1} {2}; if (`$LASTEXITCODE -ne 0) {{ exit `$LASTEXITCODE }}" -f $quoted, $redirect, (Format-XuQuoted $out)))
    }
    $command = ($parts.ToArray() -join '; ') + '; exit 0'
    $r = @{ exit_code = $null; output = ''; timed_out = $false; swept = $sweep.swept; sweep_error = $sweep.error }
    $task = New-XuSystemTask $command ([TimeSpan]::FromSeconds($TimeoutS + 60))
    # Past this time neither this call nor its task (stopped by Task Scheduler at its limit) can still be at work: a later sweep may go.
    $task.Description = 'xtractuniversal.tls certreq until ' + (Format-XuTime ([DateTime]::UtcNow.AddSeconds($TimeoutS + 120)))
    $null = Register-ScheduledTask -TaskName $name -TaskPath '\' @task
    try {
        $sw = [Diagnostics.Stopwatch]::StartNew()
        $null = Start-ScheduledTask -TaskName $name -TaskPath '\'
        do {
            Start-Sleep -Milliseconds 500
            $state = (Get-ScheduledTask -TaskName $name -TaskPath '\').State.ToString()
            $last = [long](Get-ScheduledTaskInfo -TaskName $name -TaskPath '\').LastTaskResult
            $running = $state -in 'Running', 'Queued' -or $TaskStillRunning -contains $last
        } while ($running -and $sw.Elapsed.TotalSeconds -lt $TimeoutS)
        if ($running) { $r.timed_out = $true; $null = Stop-ScheduledTask -TaskName $name -TaskPath '\' } else { $r.exit_code = ConvertTo-XuExitCode $last }
        # *> wrote it as Windows PowerShell's Out-File does (UTF-16 with a BOM), *>> appended; ReadAllText recognises it.
        if ([IO.File]::Exists($out)) { $r.output = [IO.File]::ReadAllText($out).Trim() }
    } finally {
        $null = Unregister-ScheduledTask -TaskName $name -TaskPath '\' -Confirm:$false
        if ([IO.File]::Exists($out)) { [IO.File]::Delete($out) }
    }
    $r
}

function Invoke-XuCertreqHere([object[]]$Steps) {
    # The same steps in this (WinRM: network) logon. Under 'Stop', Windows PowerShell turns a native command's first stderr
    # line into a terminating error: 'Continue' in this function's own scope.
    $ErrorActionPreference = 'Continue'
    $r = @{ exit_code = 0; output = '' }
    $lines = [Collections.ArrayList]::new()
    foreach ($step in $Steps) {
        if ($step.needs -and -not (Test-Path -LiteralPath $step.needs)) { break }
        $certreqArgs = [string[]]@($step.arguments)
        $stepLines = & certreq.exe $certreqArgs 2>&1 | ForEach-Object { [string]$_ }
        foreach ($line in @($stepLines)) { [void]$lines.Add($line) }
        $r.exit_code = $LASTEXITCODE
        if ($r.exit_code -ne 0) { break }
    }
    $r.output = ($lines.ToArray() -join "`r`n").Trim()
    $r
}

function Format-XuRequestInf([string]$Template, [string[]]$Names, [int]$KeyLength, [string]$Provider) {
    # A new machine key of the given provider, not exportable; KeySpec 1 (AT_KEYEXCHANGE): RSA key exchange needs it. Silent: no
    # provider may ask anything on a desktop (there is none in the task's session 0). The values matched patterns (ASCII, no
    # quotes). Single quotes keep $Windows NT$ from being expanded.
    $lines = @('[Version]', 'Signature="$Windows NT$"', '[NewRequest]', ('Subject = "CN={0}"' -f $Names[0]), ('KeyLength = {0}' -f $KeyLength),
        'KeySpec = 1', 'Exportable = FALSE', 'MachineKeySet = TRUE', 'Silent = TRUE') + $KeyProviders[$Provider] + @(
        'RequestType = PKCS10', '[Extensions]', '2.5.29.17 = "{text}"')
    $lines += @(foreach ($n in $Names) { '_continue_ = "dns={0}&"' -f $n })
    $lines += '[RequestAttributes]', ('CertificateTemplate = "{0}"' -f $Template)
    ($lines -join "`r`n") + "`r`n"
}

function Get-XuJournalPath($Name) {
    $path = [IO.Path]::Combine($JournalDir, (Assert-XuName $Name $JournalNamePattern 'name') + '.json')
    Assert-XuJournalDir
    $path
}

function Format-XuQuoted([string]$Value) { "'" + ($Value -replace "'", "''") + "'" }

# Each entry: a port that must present a certificate (with port_probe itself), and answer GET http_path with one of http_statuses.
function Assert-XuServed($Required) {
    foreach ($x in $Required) {
        $port = [int]$x.port
        $want = ConvertTo-XuThumbprint $x.thumbprint
        $path = $null
        if ($x.http_path) { $path = [string]$x.http_path }
        $seen = & $primitives['port_probe'] (@{ host = 'localhost'; server_name = $x.server_name; port = $port; tls = $true; http_path = $path; timeout_ms = 5000 })
        $served = $null
        if ($seen.der_b64) { $served = [System.Security.Cryptography.X509Certificates.X509Certificate2]::new([Convert]::FromBase64String($seen.der_b64)).Thumbprint.ToUpperInvariant() }
        $problem = $seen.error
        if (-not $problem) { $problem = $seen.tls_error }
        if ($served -ne $want -or $problem) {
            $what = 'no certificate'
            if ($served) { $what = $served }
            if ($problem) { $what += ' (' + $problem + ')' }
            Stop-Xu 'PreconditionFailed' ('port {0} presents {1}, not {2}' -f $port, $what, $want)
        }
        if ($null -ne $path) {
            $statuses = @($x.http_statuses | ForEach-Object { [int]$_ })
            if ($statuses -notcontains [int]$seen.http_status) {
                Stop-Xu 'PreconditionFailed' ('GET {0} on port {1} answered {2}, not {3}' -f $path, $port, $seen.http_status, ($statuses -join ' or '))
            }
        }
    }
}

# One entry per operation of the protocol's primitives table: each takes the op's args and returns its result.
$primitives = @{
    'discover' = {
        param($a)
        $domain = [Net.NetworkInformation.IPGlobalProperties]::GetIPGlobalProperties().DomainName
        if (-not $domain) {
            $cs = Get-CimInstance -ClassName Win32_ComputerSystem
            if ($cs.PartOfDomain) { $domain = [string]$cs.Domain } else { $domain = $null }
        }
        # All services are listed and compared here, so nothing from the request goes into a WQL filter.
        $all = @(Get-CimInstance -ClassName Win32_Service)
        if ($a.service_name) { $svc = $all | Where-Object { $_.Name -eq $a.service_name } | Select-Object -First 1 }
        else { $svc = $all | Where-Object { $_.DisplayName -eq $a.service_display_name } | Select-Object -First 1 }
        $service = $null
        $dir = [string]$a.install_dir
        if ($null -ne $svc) {
            $account = [string]$svc.StartName
            $sid = Get-XuAccountSid $account
            $service = [ordered]@{
                name = [string]$svc.Name; display_name = [string]$svc.DisplayName; state = ([string]$svc.State -replace ' ', '')
                start_mode = [string]$svc.StartMode; account = $account; account_sid = $sid; account_groups = (Get-XuAccountGroups $account $sid)
                image_path = [string]$svc.PathName; dependents = @(Get-XuDependents ([string]$svc.Name))
            }
            if (-not $dir) { $exe = Get-XuExePath $svc.PathName; if ($exe) { $dir = [IO.Path]::GetDirectoryName($exe) } }
        }
        $files = [Collections.ArrayList]::new()
        foreach ($p in $a.files) { [void]$files.Add((Read-XuFileEntry ([string]$p) $dir)) }
        $exists = $false
        if ($dir) { $exists = [IO.Directory]::Exists($dir) } else { $dir = $null }
        $v = [Environment]::OSVersion.Version
        [ordered]@{
            computer = [ordered]@{ hostname = [Net.Dns]::GetHostName(); domain = $domain; os_version = ('{0}.{1}.{2}' -f $v.Major, $v.Minor, $v.Build) }
            service = $service; install_dir = $dir; install_dir_exists = $exists; files = $files
        }
    }
    'cert_list' = {
        param($a)
        $want = $null
        if ($null -ne $a.thumbprints) { $want = @(foreach ($t in $a.thumbprints) { ConvertTo-XuThumbprint $t }) }
        $list = [Collections.ArrayList]::new()
        $flags = 'ReadOnly, OpenExistingOnly'
        if ($a.include_archived -eq $true) { $flags += ', IncludeArchived' }
        $st = Open-XuStore $a.store $flags
        try {
            foreach ($c in $st.Certificates) {
                $tp = $c.Thumbprint.ToUpperInvariant()
                if ($null -ne $want -and $want -notcontains $tp) { continue }
                $key = $null
                if ($c.HasPrivateKey) { $key = Get-XuKeyInfo $c }
                [void]$list.Add([ordered]@{
                    thumbprint = $tp; der_b64 = [Convert]::ToBase64String($c.RawData)
                    has_private_key = $c.HasPrivateKey; archived = $c.Archived; friendly_name = $c.FriendlyName; key = $key
                })
            }
        } finally { $st.Close() }
        @{ certificates = $list }
    }
    'cert_check' = {
        param($a)
        # A guard for the operations after it in the same call (stop_on_error): the settings are about to name this
        # certificate, and another tool (win-acme) may have deleted it since it was read.
        $tp = ConvertTo-XuThumbprint $a.thumbprint
        $st = Open-XuStore 'My' 'ReadOnly, OpenExistingOnly'
        try { $c = Find-XuCert $st $tp } finally { $st.Close() }
        if ($null -eq $c) { Stop-Xu 'NotFound' ('{0} is not in LocalMachine\My' -f $tp) }
        if (-not $c.HasPrivateKey) { Stop-Xu 'NotFound' ('{0} is in LocalMachine\My without its private key' -f $tp) }
        @{ thumbprint = $tp; has_private_key = $true }
    }
    'pfx_import' = {
        param($a)
        if (-not $a.pfx_b64) { Stop-Xu 'InvalidArgument' 'pfx_b64 is required' }
        $bytes = [Convert]::FromBase64String([string]$a.pfx_b64)
        # A first import without PersistKeySet only learns the thumbprint (its key is deleted again on Reset), so a
        # certificate already in the store keeps its own key, and that key's ACL, and no orphaned key file is left.
        # The password and the PFX bytes go to .NET methods only: a cmdlet's parameters may be logged (module logging).
        # Windows opens a PFX only with the password it was made with, and to it "" and NULL differ (PFXImportCertStore):
        # one without a password is tried with "" and then with a real null ($null itself would reach .NET as "" again).
        if ($a.password -is [string] -and $a.password.Length -gt 0) { $pfxPasswords = @($a.password) }
        else { $pfxPasswords = @('', [System.Management.Automation.Language.NullString]::Value) }
        for ($i = 0; $i -lt $pfxPasswords.Count; $i++) {
            $probe = [System.Security.Cryptography.X509Certificates.X509Certificate2Collection]::new()
            try { $probe.Import($bytes, $pfxPasswords[$i], 'MachineKeySet'); $pfxPassword = $pfxPasswords[$i]; break }
            catch { if ($i -eq $pfxPasswords.Count - 1) { throw } }
        }
        $tp = $null
        # The PFX's intermediate CA certificates are kept as bare certificates (a copy of the DER, no key).
        $cas = [Collections.ArrayList]::new()
        foreach ($c in $probe) {
            if ($null -eq $tp -and $c.HasPrivateKey) { $tp = $c.Thumbprint.ToUpperInvariant() }
            elseif (Test-XuIntermediate $c) { [void]$cas.Add([System.Security.Cryptography.X509Certificates.X509Certificate2]::new($c.RawData)) }
            $c.Reset()
        }
        if ($null -eq $tp) { Stop-Xu 'InvalidArgument' 'the PFX holds no certificate with a private key' }
        # Archived certificates are seen too: one that is archived or has no key is repaired from the PFX.
        $st = Open-XuStore 'My' 'ReadWrite, IncludeArchived'
        try {
            $old = Find-XuCert $st $tp
            $present = $null -ne $old -and $old.HasPrivateKey -and -not $old.Archived
            $repaired = $null -ne $old -and -not $present
            if (-not $present) {
                $flags = 'MachineKeySet, PersistKeySet'
                if ($a.exportable) { $flags += ', Exportable' }
                $coll = [System.Security.Cryptography.X509Certificates.X509Certificate2Collection]::new()
                $coll.Import($bytes, $pfxPassword, $flags)
                foreach ($c in $coll) { if ($c.Thumbprint -eq $tp) { $st.Add($c) } }
                # Add keeps the properties of the entry it replaces, the archived flag among them.
                $new = Find-XuCert $st $tp
                if ($null -ne $new -and $new.Archived) { $new.Archived = $false }
            }
        } finally { $st.Close() }
        # Intermediates go to LocalMachine\CA, so the server can send its chain; roots are never added anywhere.
        $added = [Collections.ArrayList]::new()
        if ($cas.Count -gt 0) {
            $inter = Open-XuStore 'CA' 'ReadWrite'
            try {
                foreach ($c in $cas) {
                    $ctp = $c.Thumbprint.ToUpperInvariant()
                    if ($ctp -ne $tp -and $null -eq (Find-XuCert $inter $ctp)) { $inter.Add($c); [void]$added.Add($ctp) }
                }
            } finally { $inter.Close() }
        }
        [ordered]@{ thumbprint = $tp; already_present = $present; repaired = $repaired; chain_added = $added }
    }
    'cert_remove' = {
        param($a)
        $tp = ConvertTo-XuThumbprint $a.thumbprint
        # Each listed port is probed first: one that does not present its certificate removes nothing.
        Assert-XuServed $a.require_served
        $st = Open-XuStore $a.store 'ReadWrite, OpenExistingOnly'
        try { $c = Find-XuCert $st $tp; if ($null -ne $c) { $st.Remove($c) } } finally { $st.Close() }
        @{ removed = ($null -ne $c) }
    }
    'served_check' = {
        param($a)
        # A guard for the operations after it in the same call (stop_on_error): it fails unless every port serves as listed.
        Assert-XuServed $a.require_served
        @{ served = $true }
    }
    'file_check' = {
        param($a)
        # A guard for the operations after it in the same call (stop_on_error): it fails unless the file is as it was read.
        $path = Assert-XuPath $a.path 'path'
        if ($a.sha256 -isnot [string] -or -not $a.sha256) { Stop-Xu 'InvalidArgument' 'sha256 must be a hex digest or absent' }
        $expected = $a.sha256.ToLowerInvariant()
        $found = $null
        if ([IO.File]::Exists($path)) { $found = Get-XuSha256 (Read-XuBytes $path) }
        if ($expected -eq 'absent') { if ($null -ne $found) { Stop-Xu 'HashMismatch' ('{0} exists' -f $path) } }
        elseif ($null -eq $found) { Stop-Xu 'HashMismatch' ('{0} does not exist' -f $path) }
        elseif ($expected -ne $found) { Stop-Xu 'HashMismatch' ('{0} has sha256 {1}, not {2}' -f $path, $found, $expected) }
        @{ sha256 = $found }
    }
    'key_grant_read' = {
        param($a)
        $tp = ConvertTo-XuThumbprint $a.thumbprint
        if (-not $a.account) { Stop-Xu 'InvalidArgument' 'account is required' }
        $account = [string]$a.account
        $st = Open-XuStore 'My' 'ReadOnly'
        try { $c = Find-XuCert $st $tp } finally { $st.Close() }
        if ($null -eq $c -or -not $c.HasPrivateKey) { Stop-Xu 'NotFound' ('no certificate with a private key has thumbprint {0}' -f $tp) }
        $file = (Get-XuKeyFile $c).file
        if (-not $file) { Stop-Xu 'NotFound' ('the private key file of {0} was not found' -f $tp) }
        if ($account -match '^S-1-[0-9-]+\z') { $sid = [Security.Principal.SecurityIdentifier]::new($account) }
        else { $sid = [Security.Principal.NTAccount]::new($account).Translate([Security.Principal.SecurityIdentifier]) }
        # Only the DACL is read and written back (Set-Acl would also rewrite the owner, and fail on SYSTEM-owned keys).
        $sec = [IO.File]::GetAccessControl($file, 'Access')
        foreach ($rule in $sec.GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier])) {
            $rights = Get-XuRightsName ([int]$rule.FileSystemRights)
            if ($rule.AccessControlType -eq 'Allow' -and $rule.IdentityReference.Value -eq $sid.Value -and $rights -in 'Read', 'FullControl') { return @{ changed = $false; sid = $sid.Value } }
        }
        $sec.AddAccessRule([Security.AccessControl.FileSystemAccessRule]::new($sid, 'Read', 'Allow'))
        [IO.File]::SetAccessControl($file, $sec)
        @{ changed = $true; sid = $sid.Value }
    }
    'cert_renew_reuse_key' = {
        param($a)
        $tp = ConvertTo-XuThumbprint $a.thumbprint
        $st = Open-XuStore 'My' 'ReadOnly'
        try { $old = Find-XuCert $st $tp } finally { $st.Close() }
        if ($null -eq $old) { Stop-Xu 'NotFound' ('no certificate has thumbprint {0}' -f $tp) }
        # Read first: certreq archives the old certificate, which then no longer enumerates.
        $publicKey = [Convert]::ToBase64String($old.GetPublicKey())
        $certreqArgs = @('-enroll', '-machine', '-q', '-cert', $tp, 'Renew', 'ReuseKeys')
        $runAs = 'machine'
        if ($null -ne $a.run_as) { $runAs = [string]$a.run_as }
        $limit = 300
        if ($null -ne $a.timeout_s) { $limit = [int]$a.timeout_s }
        $swept = @(); $sweepError = $null
        if ($runAs -eq 'machine') {
            # A WinRM logon has no credentials to pass on to the CA: the enrolment runs as SYSTEM, i.e. the computer account.
            $run = Invoke-XuAsSystem @(@{ arguments = $certreqArgs }) $limit
            $code = $run.exit_code; $output = $run.output; $swept = $run.swept; $sweepError = $run.sweep_error
            if ($run.timed_out) { Stop-Xu 'CertreqFailed' ('certreq did not finish within {0} s: {1}' -f $limit, $output) }
        } elseif ($runAs -eq 'caller') {
            $run = Invoke-XuCertreqHere @(@{ arguments = $certreqArgs })
            $code = $run.exit_code; $output = $run.output
        } else { Stop-Xu 'InvalidArgument' 'run_as must be machine or caller' }
        if ($code -ne 0) { Stop-Xu 'CertreqFailed' ('certreq exited with {0}: {1}' -f $code, $output) }
        $st = Open-XuStore 'My' 'ReadOnly'
        try {
            $new = $st.Certificates | Where-Object { $_.Thumbprint -ne $tp -and [Convert]::ToBase64String($_.GetPublicKey()) -eq $publicKey } |
                Sort-Object -Property NotBefore -Descending | Select-Object -First 1
        } finally { $st.Close() }
        if ($null -eq $new) { Stop-Xu 'NotFound' ('certreq succeeded but no new certificate with the key of {0} is in the store' -f $tp) }
        [ordered]@{ thumbprint = $new.Thumbprint.ToUpperInvariant(); output = $output; exit_code = $code; enrolled_as = $runAs; swept = $swept; sweep_error = $sweepError }
    }
    'cert_enroll' = {
        param($a)
        $template = Assert-XuName $a.template $TemplateNamePattern 'template'
        $badNames = 'dns_names must be a non-empty list of DNS names'
        $names = @(foreach ($n in $a.dns_names) { if ($n -isnot [string] -or $n -cnotmatch $ServerNamePattern) { Stop-Xu 'InvalidArgument' $badNames }; $n })
        if ($names.Count -eq 0) { Stop-Xu 'InvalidArgument' $badNames }
        $submit = @('-submit', '-q')
        if ($null -ne $a.ca_config) { $submit += '-config', (Assert-XuName $a.ca_config $CaConfigPattern 'ca_config') }
        $provider = 'schannel_csp'
        if ($null -ne $a.key_provider) { $provider = [string]$a.key_provider }
        if ($KeyProviders.Keys -cnotcontains $provider) { Stop-Xu 'InvalidArgument' 'key_provider must be schannel_csp or software_ksp' }
        $keyLength = 2048
        if ($null -ne $a.key_length) { $keyLength = [int]$a.key_length }
        if (@(2048, 3072, 4096) -notcontains $keyLength) { Stop-Xu 'InvalidArgument' 'key_length must be 2048, 3072 or 4096' }
        $runAs = 'machine'
        if ($null -ne $a.run_as) { $runAs = [string]$a.run_as }
        if (@('machine', 'caller') -cnotcontains $runAs) { Stop-Xu 'InvalidArgument' 'run_as must be machine or caller' }
        # Without -config certreq asks which CA on a desktop, and a SYSTEM task has none to show it on: as the machine the CA is given.
        if ($runAs -eq 'machine' -and $null -eq $a.ca_config) { Stop-Xu 'InvalidArgument' 'ca_config is required as the machine (ca_list names the CAs)' }
        $limit = 300
        if ($null -ne $a.timeout_s) { $limit = [int]$a.timeout_s }
        # Request, certificate and the CA's answers are files of the journal folder, each named (else certreq names them).
        Initialize-XuJournalDir
        # The task and the files share one GUID, so a sweep after a killed call removes them together.
        $id = [Guid]::NewGuid().ToString('N')
        $base = [IO.Path]::Combine($JournalDir, 'enrol-' + $id)
        $files = [ordered]@{ inf = $base + '.inf'; req = $base + '.req'; cer = $base + '.cer'; chain = $base + '.p7b'; response = $base + '.rsp' }
        # -new makes the key and a request in LocalMachine\REQUEST; -accept (only when -submit wrote a certificate, which a
        # pending request does not) puts it in My with that key. As cert_renew_reuse_key: as the machine, or in this logon.
        $steps = @(
            @{ arguments = @('-new', '-machine', '-q', $files.inf, $files.req) },
            @{ arguments = $submit + @($files.req, $files.cer, $files.chain, $files.response) },
            @{ arguments = @('-accept', '-machine', '-q', $files.cer); needs = $files.cer }
        )
        $swept = @(); $sweepError = $null
        try {
            # certreq reads an INF as ANSI, or as UTF-16 after a BOM: UTF-16 with its BOM, never UTF-8.
            [IO.File]::WriteAllText($files.inf, (Format-XuRequestInf $template $names $keyLength $provider), [Text.Encoding]::Unicode)
            if ($runAs -eq 'machine') { $run = Invoke-XuAsSystem $steps $limit $id; $swept = $run.swept; $sweepError = $run.sweep_error }
            else { $run = Invoke-XuCertreqHere $steps }
            $code = $run.exit_code; $output = $run.output
            if ($run.timed_out) { Stop-Xu 'CertreqFailed' ('certreq did not finish within {0} s: {1}' -f $limit, $output) }
            if ($code -ne 0) { Stop-Xu 'CertreqFailed' ('certreq exited with {0}: {1}' -f $code, $output) }
            if (-not [IO.File]::Exists($files.cer)) {
                # A template needing a CA manager's approval: -submit exits 0 with a request id and no certificate. The label
                # before the id is translated on other Windows languages; the line with the id in double quotes is found by its form.
                if ($output -cmatch '(?m)^[^:\r\n]{1,40}:\s*"(\d+)"\s*$') { Stop-Xu 'EnrollPending' ('request {0} is pending at the CA: {1}' -f $Matches[1], $output) }
                Stop-Xu 'CertreqFailed' ('certreq wrote no certificate: {0}' -f $output)
            }
            $tp = [System.Security.Cryptography.X509Certificates.X509Certificate2]::new([IO.File]::ReadAllBytes($files.cer)).Thumbprint.ToUpperInvariant()
        } finally { foreach ($f in $files.Values) { if ([IO.File]::Exists($f)) { [IO.File]::Delete($f) } } }
        $st = Open-XuStore 'My' 'ReadOnly'
        try { $new = Find-XuCert $st $tp } finally { $st.Close() }
        if ($null -eq $new -or -not $new.HasPrivateKey) { Stop-Xu 'NotFound' ('certreq accepted {0} but My lacks it or its private key' -f $tp) }
        [ordered]@{ thumbprint = $tp; output = $output; exit_code = $code; enrolled_as = $runAs; swept = $swept; sweep_error = $sweepError }
    }
    'ca_list' = {
        param($a)
        # The forest's enterprise CAs and the templates each publishes, read from AD as the machine; the controller picks.
        $limit = 120
        if ($null -ne $a.timeout_s) { $limit = [int]$a.timeout_s }
        $run = Invoke-XuAsSystem @(@{ script = $CaListScript }) $limit
        if ($run.timed_out -or $run.exit_code -ne 0) { Stop-Xu 'CertreqFailed' ('listing the enterprise CAs as the machine failed ({0}): {1}' -f $run.exit_code, $run.output) }
        $cas = @(foreach ($line in ($run.output -split "`r?`n")) {
                $fields = $line.Trim().Split('|')
                if ($fields.Count -eq 2 -and $fields[0]) { [ordered]@{ config = $fields[0]; templates = @($fields[1].Split(',') | Where-Object { $_ }) } }
            })
        [ordered]@{ cas = $cas; swept = $run.swept; sweep_error = $run.sweep_error }
    }
    'file_write' = {
        param($a)
        $path = Assert-XuPath $a.path 'path'
        if ($a.content -isnot [string]) { Stop-Xu 'InvalidArgument' 'content must be text' }
        $backup = $null
        if ($null -ne $a.backup_path) { $backup = Assert-XuPath $a.backup_path 'backup_path' }
        $previous = $null
        if ([IO.File]::Exists($path)) { $previous = Get-XuSha256 (Read-XuBytes $path) }
        if ($null -ne $a.expected_sha256) {
            $expected = ([string]$a.expected_sha256).ToLowerInvariant()
            if ($expected -eq 'absent') { if ($null -ne $previous) { Stop-Xu 'HashMismatch' ('{0} exists' -f $path) } }
            elseif ($null -eq $previous) { Stop-Xu 'HashMismatch' ('{0} does not exist' -f $path) }
            elseif ($expected -ne $previous) { Stop-Xu 'HashMismatch' ('{0} has sha256 {1}, not {2}' -f $path, $previous, $expected) }
        }
        if ($null -eq $previous) { $backup = $null }
        $bytes = $Utf8NoBom.GetBytes([string]$a.content)
        # The controller keeps a file's BOM: with bom the bytes written (and hashed) start with EF BB BF.
        if ($a.bom -eq $true) { $bytes = [byte[]]($Utf8Bom + $bytes) }
        Write-XuAtomic $path $bytes $backup
        [ordered]@{ sha256 = (Get-XuSha256 $bytes); previous_sha256 = $previous; backup_path = $backup }
    }
    'file_restore' = {
        param($a)
        $backup = Assert-XuPath $a.backup_path 'backup_path'
        $path = Assert-XuPath $a.path 'path'
        if (-not [IO.File]::Exists($backup)) { Stop-Xu 'NotFound' ('backup {0} does not exist' -f $backup) }
        $keep = ''
        if ($null -ne $a.keep_current_path -and [IO.File]::Exists($path)) { $keep = Assert-XuPath $a.keep_current_path 'keep_current_path' }
        $bytes = Read-XuBytes $backup
        # With keep_current_path the file being replaced is kept there (File.Replace's backup), byte for byte.
        Write-XuAtomic $path $bytes $keep
        $kept = $null
        if ($keep) { $kept = $keep }
        [ordered]@{ sha256 = (Get-XuSha256 $bytes); kept_current_path = $kept }
    }
    'file_remove' = {
        param($a)
        $path = Assert-XuPath $a.path 'path'
        $backup = $null
        if ($null -ne $a.backup_path) { $backup = Assert-XuPath $a.backup_path 'backup_path' }
        if (-not [IO.File]::Exists($path)) { return [ordered]@{ removed = $false; backup_path = $null } }
        # A rename on the same volume: the file is either still in place or already the backup. It fails if the backup exists.
        if ($null -ne $backup) { [IO.File]::Move($path, $backup) } else { [IO.File]::Delete($path) }
        [ordered]@{ removed = $true; backup_path = $backup }
    }
    'service_restart' = {
        param($a)
        $name = [string]$a.name
        if (-not $name) { Stop-Xu 'InvalidArgument' 'name is required' }
        # A service that is missing, or that this session may not open, fails here with Windows' own error (no SilentlyContinue).
        $sc = [System.ServiceProcess.ServiceController]::new($name)
        if ($sc.ServiceName -ne $name) { Stop-Xu 'NotFound' ('service {0} does not exist' -f $name) }
        $limit = 60.0
        if ($null -ne $a.timeout_s) { $limit = [double]$a.timeout_s }
        $ports = @(foreach ($p in $a.wait_ports) { [int]$p })
        $sw = [Diagnostics.Stopwatch]::StartNew()
        $startError = $null
        $restarted = $false
        # ServiceController.Stop() stops the running dependents first and waits 30 s for each, whatever our limit, and a hanging
        # one makes it throw before the service stops. So they are stopped here, in DependentServices' order (a dependent's own
        # dependents come before it), within our limit, and each one stopped here is started again in every outcome.
        $stopped = [Collections.ArrayList]::new()
        try {
            # A service still starting refuses to stop (ERROR_SERVICE_CANNOT_ACCEPT_CTRL, 1061): it is waited for first.
            Wait-XuServiceLeaves $sc 'StartPending' $sw $limit
            if ($sc.Status -eq 'StartPending') { $startError = 'the service did not finish starting within {0} s (StartPending)' -f $limit }
            else {
                foreach ($d in $sc.DependentServices) {
                    $d.Refresh()
                    if ($d.Status -eq 'Stopped') { continue }
                    if ($d.Status -ne 'StopPending') { [void]$stopped.Add($d); $d.Stop() }
                    Wait-XuServiceLeaves $d 'Running', 'StopPending', 'StartPending', 'Paused', 'PausePending', 'ContinuePending' $sw $limit
                    if ($d.Status -ne 'Stopped') { $startError = 'the dependent service {0} did not stop within {1} s ({2}), so {3} was not stopped' -f $d.ServiceName, $limit, $d.Status, $name; break }
                }
            }
            if ($null -eq $startError) {
                if ($sc.Status -ne 'Stopped' -and $sc.Status -ne 'StopPending') { $sc.Stop() }
                Wait-XuServiceLeaves $sc 'Running', 'StopPending', 'Paused', 'PausePending', 'ContinuePending' $sw $limit
                # Start is only called on a stopped service: one hanging in StopPending would refuse it anyway.
                if ($sc.Status -ne 'Stopped') { $startError = 'the service did not stop within {0} s ({1})' -f $limit, $sc.Status }
                else {
                    $sc.Start()
                    $restarted = $true
                    Start-Sleep -Milliseconds 250
                    Wait-XuServiceLeaves $sc 'StartPending' $sw $limit
                    if ($sc.Status -eq 'Stopped') { $startError = 'the service stopped while starting' }
                }
            }
        } catch { $startError = Get-XuMessage $_.Exception }
        finally {
            # What depends on another starts after it: the reverse of the order they were stopped in. One that does not start
            # is reported by its state.
            for ($i = $stopped.Count - 1; $i -ge 0; $i--) { $d = $stopped[$i]; $d.Refresh(); if ($d.Status -eq 'Stopped') { try { $d.Start() } catch { $null = $_ } } }
        }
        $open = @{}
        foreach ($p in $ports) { $open[$p] = $false }
        while ($restarted) {
            foreach ($p in $ports) { if (-not $open[$p]) { $open[$p] = Test-XuPort 'localhost' $p 500 } }
            $sc.Refresh()
            if ($sc.Status -ne 'Running' -or $open.Values -notcontains $false -or $sw.Elapsed.TotalSeconds -ge $limit) { break }
            Start-Sleep -Milliseconds 500
        }
        $sc.Refresh()
        $state = $sc.Status.ToString()
        foreach ($d in $stopped) { Wait-XuServiceLeaves $d 'StartPending' $sw $limit }
        [ordered]@{
            started = ($restarted -and $state -eq 'Running' -and $open.Values -notcontains $false); restarted = $restarted; state = $state; start_error = $startError
            ports = @(foreach ($p in $ports) { [ordered]@{ port = $p; open = [bool]$open[$p] } })
            dependents = @(foreach ($d in $stopped) { [ordered]@{ name = [string]$d.ServiceName; state = $d.Status.ToString() } })
            elapsed_s = [Math]::Round($sw.Elapsed.TotalSeconds, 1)
        }
    }
    'port_probe' = {
        param($a)
        $hostName = 'localhost'
        if ($a.host) { $hostName = [string]$a.host }
        # Connect to host, but name the server as its certificate does (SNI and Host header): XU may answer only to that name.
        $serverName = $hostName
        if ($a.server_name) {
            $serverName = [string]$a.server_name
            if ($serverName -notmatch $ServerNamePattern) { Stop-Xu 'InvalidArgument' 'server_name must be a DNS name or an IPv4 address' }
        }
        $port = [int]$a.port
        $timeoutMs = 5000
        if ($a.timeout_ms) { $timeoutMs = [int]$a.timeout_ms }
        $path = $a.http_path
        if ($null -ne $path -and ($path -isnot [string] -or $path -notmatch '^/[\x21-\x7E]*\z')) { Stop-Xu 'InvalidArgument' 'http_path must start with / and hold no spaces or control characters' }
        $r = [ordered]@{ connected = $false; tls_error = $null; der_b64 = $null; http_status = $null; http_body = $null; error = $null }
        $client = [Net.Sockets.TcpClient]::new()
        try {
            $ar = $client.BeginConnect($hostName, $port, $null, $null)
            if (-not $ar.AsyncWaitHandle.WaitOne($timeoutMs)) { $r.error = 'connecting to {0}:{1} timed out' -f $hostName, $port; return $r }
            $client.EndConnect($ar)
            $r.connected = $true
            $client.ReceiveTimeout = $timeoutMs
            $client.SendTimeout = $timeoutMs
            $stream = $client.GetStream()
            if ($a.tls) {
                # Any certificate is accepted: it is only captured here, the controller judges it.
                $seen = @{ der = $null }
                $accept = { param($s, $cert, $chain, $errs) if ($null -ne $cert) { $seen.der = [Convert]::ToBase64String($cert.GetRawCertData()) }; $true }.GetNewClosure()
                $ssl = [Net.Security.SslStream]::new($stream, $false, [Net.Security.RemoteCertificateValidationCallback]$accept)
                # The versions the OS offers by default (SslProtocols None, .NET Framework 4.7+): a fixed list would go stale.
                # An older Framework refuses None before any byte is sent; it then offers what it knows.
                try {
                    try { $ssl.AuthenticateAsClient($serverName, $null, [Security.Authentication.SslProtocols]::None, $false) }
                    catch {
                        $refusal = Get-XuInner $_.Exception
                        if ($refusal -isnot [ArgumentException] -and $refusal -isnot [NotSupportedException]) { throw }
                        $ssl.AuthenticateAsClient($serverName, $null, 'Tls, Tls11, Tls12', $false)
                    }
                } catch { $r.tls_error = Get-XuMessage $_.Exception }
                $r.der_b64 = $seen.der
                if ($null -ne $r.tls_error) { return $r }
                $stream = $ssl
            }
            if ($null -ne $path) {
                $httpRequest = [Text.Encoding]::ASCII.GetBytes(("GET {0} HTTP/1.1`r`nHost: {1}:{2}`r`nConnection: close`r`n`r`n" -f $path, $serverName, $port))
                $stream.Write($httpRequest, 0, $httpRequest.Length)
                $stream.Flush()
                $buffer = [byte[]]::new(8192)
                $received = [IO.MemoryStream]::new()
                try {
                    while ($received.Length -lt 65536) {
                        $n = $stream.Read($buffer, 0, $buffer.Length)
                        if ($n -le 0) { break }
                        $received.Write($buffer, 0, $n)
                    }
                } catch { if ($received.Length -eq 0) { throw } }
                $latin1 = [Text.Encoding]::GetEncoding(28591)
                $text = $latin1.GetString($received.ToArray())
                $end = $text.IndexOf("`r`n`r`n")
                if ($text -match '^HTTP/\d(\.\d)?\s+(\d{3})') { $r.http_status = [int]$Matches[2] }
                if ($null -eq $r.http_status -or $end -lt 0) { $r.error = 'no HTTP response'; return $r }
                $body = $text.Substring($end + 4)
                if ($text.Substring(0, $end) -match '(?im)^Transfer-Encoding:\s*chunked') { $body = ConvertFrom-XuChunked $body }
                $bodyBytes = $latin1.GetBytes($body)
                $r.http_body = [Text.Encoding]::UTF8.GetString($bodyBytes, 0, [Math]::Min(4096, $bodyBytes.Length))
            }
        } catch { $r.error = Get-XuMessage $_.Exception } finally { $client.Close() }
        $r
    }
    'fw_get' = {
        param($a)
        $group = Assert-XuName $a.group $GroupTaskPattern 'group'
        # Each query's error is reported beside its result: a group without rules is an error record on Windows.
        $persistent = Get-XuFwQuery $group 'PersistentStore'
        $rules = $null
        if ($null -eq $persistent.error) { $rules = @(foreach ($fr in $persistent.items) { ConvertFrom-XuFwRule $fr }) }
        # Whether the rules are in effect: present in the active store, their profiles on, local rules not ignored by policy.
        $activeQuery = Get-XuFwQuery $group 'ActiveStore'
        $active = $null
        if ($null -eq $activeQuery.error) { $active = @(foreach ($fr in $activeQuery.items) { [string]$fr.Name }) }
        $profiles = @(foreach ($pr in @(Get-NetFirewallProfile -PolicyStore ActiveStore)) {
                [ordered]@{ name = [string]$pr.Name; enabled = ([string]$pr.Enabled -eq 'True'); local_rules_applied = ([string]$pr.AllowLocalFirewallRules -ne 'False') }
            })
        [ordered]@{ rules = $rules; rules_error = $persistent.error; active_rules = $active; active_rules_error = $activeQuery.error; profiles = $profiles }
    }
    'fw_set' = {
        param($a)
        $group = Assert-XuName $a.group $GroupTaskPattern 'group'
        $wanted = @(foreach ($x in $a.rules) { $x })
        # Every rule is checked before the group is touched, so a bad argument leaves it as it was.
        foreach ($x in $wanted) { if (-not $x.name -or -not $x.display_name) { Stop-Xu 'InvalidArgument' 'every rule needs name and display_name' } }
        $new = @(foreach ($x in $wanted) { ConvertTo-XuFwParams $x $group })
        # An empty group reads as an error on Windows: only one the controller's table calls "not found" is no rules.
        $query = Get-XuFwQuery $group 'PersistentStore'
        if ($null -ne $query.error -and -not (Test-XuAbsent $query.error)) { throw $query.record }
        $old = @($query.items)
        # The previous rules as read, so that they can be made again if Windows rejects a new one.
        $previous = @(foreach ($fr in $old) { ConvertTo-XuFwParams (ConvertFrom-XuFwRule $fr) $group })
        $added = [Collections.ArrayList]::new()
        try {
            if ($old.Count -gt 0) { $null = $old | Remove-NetFirewallRule }
            foreach ($p in $new) { $null = New-NetFirewallRule @p; [void]$added.Add($p.Name) }
        } catch {
            $failure = $_
            # Never a group without its rules: what this call added goes, the previous rules come back, then the error.
            foreach ($n in $added) { try { Remove-NetFirewallRule -Name $n } catch { $null = $_ } }
            foreach ($p in $previous) { try { $null = New-NetFirewallRule @p } catch { $null = $_ } }
            throw $failure
        }
        [ordered]@{ removed = $old.Count; added = $wanted.Count }
    }
    'task_get' = {
        param($a)
        $query = Get-XuTaskQuery (Assert-XuName $a.name $GroupTaskPattern 'name')
        if ($null -ne $query.error) { return [ordered]@{ task = $null; task_error = $query.error } }
        $t = $query.items[0]
        $next = (Get-ScheduledTaskInfo -InputObject $t).NextRunTime
        if ($null -ne $next -and $next.Year -lt 1900) { $next = $null }
        [ordered]@{ task = [ordered]@{ name = [string]$t.TaskName; state = $t.State.ToString(); next_run_utc = (Format-XuTime $next); description = $t.Description }; task_error = $null }
    }
    'task_register' = {
        param($a)
        $name = Assert-XuName $a.name $GroupTaskPattern 'name'
        $group = Assert-XuName $a.fw_group_to_remove $GroupTaskPattern 'fw_group_to_remove'
        $at = Get-XuTrigger $a.delay_s
        # The only command line built from request values: two names that matched the pattern (no quotes), quoted anyway.
        $command = "Remove-NetFirewallRule -Group {0} -ErrorAction SilentlyContinue; Unregister-ScheduledTask -TaskName {1} -TaskPath '\' -Confirm:`$false" -f (Format-XuQuoted $group), (Format-XuQuoted $name)
        # A start missed while the host was down, or refused on battery power, would leave the firewall closed.
        $task = New-XuSystemTask $command (New-TimeSpan -Minutes 10)
        $task.TaskName = $name; $task.TaskPath = '\'; $task.Force = $true
        # -At is a DateTime on the host's clock: the UTC instant as local time (Kind Local), as the cmdlet's examples pass it.
        $task.Trigger = New-ScheduledTaskTrigger -Once -At $at.ToLocalTime()
        if ($null -ne $a.description) { $task.Description = [string]$a.description }
        $null = Register-ScheduledTask @task
        [ordered]@{ registered = $true; run_at_utc = (Format-XuTime $at) }
    }
    'task_remove' = {
        param($a)
        $name = Assert-XuName $a.name $GroupTaskPattern 'name'
        $query = Get-XuTaskQuery $name
        if ($null -ne $query.error) {
            if (Test-XuAbsent $query.error) { return @{ removed = $false } }
            throw $query.record
        }
        $null = Unregister-ScheduledTask -TaskName $name -TaskPath '\' -Confirm:$false
        @{ removed = $true }
    }
    'event_write' = {
        param($a)
        # The collection's own source in the Application log, registered on first use (the agent runs elevated).
        $source = 'xtractuniversal.tls'
        $id = 0
        if ($null -ne $a.event_id) { $id = [int]$a.event_id }
        if ($id -lt 1 -or $id -gt 65535) { Stop-Xu 'InvalidArgument' 'event_id must be 1 to 65535' }
        $type = [string]$a.entry_type
        if (@('Information', 'Warning', 'Error') -cnotcontains $type) { Stop-Xu 'InvalidArgument' 'entry_type must be Information, Warning or Error' }
        $message = [string]$a.message
        if ($message.Length -lt 1 -or $message.Length -gt 31000) { Stop-Xu 'InvalidArgument' 'message must be 1 to 31000 characters' }
        $registered = $false
        if (-not [Diagnostics.EventLog]::SourceExists($source)) { [Diagnostics.EventLog]::CreateEventSource($source, 'Application'); $registered = $true }
        [Diagnostics.EventLog]::WriteEntry($source, $message, [Diagnostics.EventLogEntryType]$type, $id)
        [ordered]@{ log = 'Application'; source = $source; registered = $registered }
    }
    'journal_read' = {
        param($a)
        $path = Get-XuJournalPath $a.name
        if (-not [IO.File]::Exists($path)) { return [ordered]@{ exists = $false; content = $null; sha256 = $null } }
        $b = Read-XuBytes $path
        [ordered]@{ exists = $true; content = (ConvertFrom-XuBytes $b); sha256 = (Get-XuSha256 $b) }
    }
    'journal_write' = {
        param($a)
        $path = Get-XuJournalPath $a.name
        # A journal is also a run's lease on the host: written only over the journal its writer read (or none).
        if ($null -ne $a.expected_sha256) {
            $found = $null
            if ([IO.File]::Exists($path)) { $found = Get-XuSha256 (Read-XuBytes $path) }
            $expected = ([string]$a.expected_sha256).ToLowerInvariant()
            if ($expected -eq 'absent') { if ($null -ne $found) { Stop-Xu 'HashMismatch' ('journal {0} exists' -f $a.name) } }
            elseif ($expected -ne $found) { Stop-Xu 'HashMismatch' ('journal {0} has sha256 {1}, not {2}' -f $a.name, $found, $expected) }
        }
        if ($null -eq $a.content) {
            if ([IO.File]::Exists($path)) { [IO.File]::Delete($path) }
            return @{ path = $path }
        }
        Initialize-XuJournalDir
        $bytes = $Utf8NoBom.GetBytes([string]$a.content)
        Write-XuAtomic $path $bytes ''
        @{ path = $path }
    }
}

$results = [Collections.ArrayList]::new()
# The error shapes the controller's table calls "not found", for the operations that must go on past an absent object.
$AbsentErrors = @(foreach ($m in $Request.absent_errors) { $m })
$stopOnError = $true
if ($null -ne $Request.stop_on_error) { $stopOnError = [bool]$Request.stop_on_error }
$failed = $false
foreach ($op in $Request.ops) {
    $name = [string]$op.op
    $entry = [ordered]@{ id = $op.id; op = $name }
    if ($failed -and $stopOnError) { $entry.status = 'skipped'; [void]$results.Add($entry); continue }
    $watch = [Diagnostics.Stopwatch]::StartNew()
    try {
        if ($Request.protocol -ne 1) { Stop-Xu 'InvalidArgument' ('unsupported protocol {0}' -f $Request.protocol) }
        if ($primitives.Keys -cnotcontains $name) { Stop-Xu 'UnknownOperation' ('unknown operation {0}' -f $name) }
        $opArgs = $op.args
        if ($null -eq $opArgs) { $opArgs = @{} }
        $primitive = $primitives[$name]
        $result = & $primitive $opArgs
        $entry.status = 'ok'
        $entry.result = $result
    } catch {
        # An optional operation's error is reported, but does not stop the operations after it.
        # Only a JSON true (-ne would take the string 'true' for it too).
        if (-not ($op.optional -is [bool] -and $op.optional)) { $failed = $true }
        $identity = Get-XuErrorIdentity $_
        $ex = Get-XuInner $_.Exception
        # The protocol's own errors (Stop-Xu) have a type of their own and no Windows identity.
        if ($ex.Data.Contains('xu_type')) { $identity = [ordered]@{ type = $ex.Data['xu_type']; message = $identity.message; exception = $null; fqid = $null; category = $null; hresult = $null; native_code = $null; inner = @() } }
        # Belt and braces: a PFX password never leaves the host, not even inside an error text.
        $secret = $op.args.password
        if ($secret -is [string] -and $secret.Length -gt 0) { foreach ($k in 'message', 'fqid') { if ($identity[$k]) { $identity[$k] = ([string]$identity[$k]).Replace($secret, '********') } } }
        $entry.status = 'error'
        $entry.error = $identity
    }
    $entry.elapsed_ms = [int]$watch.ElapsedMilliseconds
    [void]$results.Add($entry)
}

$hostTime = [DateTime]::UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", [Globalization.CultureInfo]::InvariantCulture)
$envelope = [ordered]@{ agent = 'xtractuniversal.tls'; protocol = 1; results = $results; host_time = $hostTime; host_elapsed_ms = [int]$AgentWatch.ElapsedMilliseconds }
$json = ConvertTo-Json -InputObject $envelope -Compress -Depth 10
# Non-ASCII as \uXXXX, so the answer survives any console code page.
$json = [regex]::Replace($json, '[^\x00-\x7F]', { param($m) '\u{0:x4}' -f [int][char]$m.Value })
# Set this late: earlier it would also decode certreq's output, which is in the OEM code page. No BOM on the pipe.
try { [Console]::OutputEncoding = $Utf8NoBom } catch { $null = $_ }
# The answer is the script's only pipeline output: powershell.exe (winrm, ssh) writes it to stdout, psrp returns it.
$json
# certreq may have left a non-zero exit code behind; the agent itself ran.
$global:LASTEXITCODE = 0
exit 0
