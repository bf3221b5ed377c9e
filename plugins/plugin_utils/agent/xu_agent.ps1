# xtractuniversal.tls agent 1
param($Request)
# The host side of docs/agent-protocol.md, for Windows PowerShell 5.1 on .NET Framework 4.6.2+.
# Its only output is one JSON object (the answer): every other output is discarded or silenced.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$WarningPreference = 'SilentlyContinue'
$VerbosePreference = 'SilentlyContinue'
$InformationPreference = 'SilentlyContinue'
Set-StrictMode -Off

# \z, not $: $ also matches before a final newline, which must not reach a path or a command line.
$GroupTaskPattern = '^[A-Za-z0-9 ._-]{1,64}\z'
$JournalNamePattern = '^[A-Za-z0-9_.-]{1,64}\z'
# A DNS name (it goes into SNI and the Host header): labels of 1 to 63 letters, digits, - and _, at most 253 characters.
$ServerNamePattern = '^(?=.{1,253}\z)[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*\z'
$ProgramData = [Environment]::GetFolderPath('CommonApplicationData')
$JournalDir = [IO.Path]::Combine($ProgramData, 'xtractuniversal.tls')
$Utf8NoBom = [Text.UTF8Encoding]::new($false)

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
    if ($Value -isnot [string] -or -not [IO.Path]::IsPathRooted($Value)) { Stop-Xu 'InvalidArgument' ('{0} must be an absolute path' -f $What) }
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

function ConvertFrom-XuTime($Value) {
    if ($Value -is [DateTime]) { return $Value.ToUniversalTime() }
    $d = [DateTime]::MinValue
    $styles = [Globalization.DateTimeStyles]'AdjustToUniversal, AssumeUniversal'
    if (-not [DateTime]::TryParse([string]$Value, [Globalization.CultureInfo]::InvariantCulture, $styles, [ref]$d)) { Stop-Xu 'InvalidArgument' 'expected an ISO 8601 UTC time' }
    $d
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

function ConvertFrom-XuBytes([byte[]]$Bytes) {
    $o = 0
    if ($Bytes.Length -ge 3 -and $Bytes[0] -eq 0xEF -and $Bytes[1] -eq 0xBB -and $Bytes[2] -eq 0xBF) { $o = 3 }
    [Text.Encoding]::UTF8.GetString($Bytes, $o, $Bytes.Length - $o)
}

function Write-XuAtomic([string]$Path, [byte[]]$Bytes, $Backup) {
    # Written beside the target, then swapped in: File.Replace keeps the target's ACL and makes the backup in one step.
    $dir = [IO.Path]::GetDirectoryName($Path)
    if (-not [IO.Directory]::Exists($dir)) { $null = [IO.Directory]::CreateDirectory($dir) }
    $tmp = $Path + '.xutls.tmp'
    try {
        [IO.File]::WriteAllBytes($tmp, $Bytes)
        if ([IO.File]::Exists($Path)) { [IO.File]::Replace($tmp, $Path, $Backup) } else { [IO.File]::Move($tmp, $Path) }
    } finally { if ([IO.File]::Exists($tmp)) { [IO.File]::Delete($tmp) } }
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

function Get-XuKeyFile($Cert) {
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
            foreach ($rule in [IO.File]::GetAccessControl($k.file, 'Access').GetAccessRules($true, $true, [System.Security.Principal.NTAccount])) {
                [void]$acl.Add([ordered]@{ identity = $rule.IdentityReference.Value; rights = (Get-XuRightsName ([int]$rule.FileSystemRights)); type = $rule.AccessControlType.ToString() })
            }
        } catch { $acl = $null }
    }
    [ordered]@{ provider = $k.provider; acl = $acl }
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

function Get-XuTask([string]$Name) {
    Get-ScheduledTask -TaskPath '\' -ErrorAction SilentlyContinue | Where-Object { $_.TaskName -eq $Name } | Select-Object -First 1
}

function Get-XuJournalPath($Name) {
    [IO.Path]::Combine($JournalDir, (Assert-XuName $Name $JournalNamePattern 'name') + '.json')
}

function Format-XuQuoted([string]$Value) { "'" + ($Value -replace "'", "''") + "'" }

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
        $dir = $a.install_dir
        if ($null -ne $svc) {
            $service = [ordered]@{
                name = [string]$svc.Name; display_name = [string]$svc.DisplayName; state = ([string]$svc.State -replace ' ', '')
                start_mode = [string]$svc.StartMode; account = [string]$svc.StartName; image_path = [string]$svc.PathName
            }
            if (-not $dir) { $exe = Get-XuExePath $svc.PathName; if ($exe) { $dir = [IO.Path]::GetDirectoryName($exe) } }
        }
        if (-not $dir) { $dir = $null }
        $files = [Collections.ArrayList]::new()
        foreach ($p in $a.files) {
            $f = [ordered]@{ path = $p; full_path = $null; exists = $false; content = $null; sha256 = $null }
            if ([IO.Path]::IsPathRooted($p)) { $f.full_path = $p } elseif ($dir) { $f.full_path = [IO.Path]::Combine($dir, $p) }
            if ($f.full_path -and [IO.File]::Exists($f.full_path)) {
                $b = Read-XuBytes $f.full_path
                $f.exists = $true; $f.content = ConvertFrom-XuBytes $b; $f.sha256 = Get-XuSha256 $b
            }
            [void]$files.Add($f)
        }
        [ordered]@{
            computer = [ordered]@{ hostname = [Net.Dns]::GetHostName(); domain = $domain }; service = $service
            install_dir = $dir; install_dir_exists = ($null -ne $dir -and [IO.Directory]::Exists($dir)); files = $files
        }
    }
    'cert_list' = {
        param($a)
        $want = $null
        if ($null -ne $a.thumbprints) { $want = @(foreach ($t in $a.thumbprints) { ConvertTo-XuThumbprint $t }) }
        $list = [Collections.ArrayList]::new()
        $st = Open-XuStore $a.store 'ReadOnly, OpenExistingOnly'
        try {
            foreach ($c in $st.Certificates) {
                $tp = $c.Thumbprint.ToUpperInvariant()
                if ($null -ne $want -and $want -notcontains $tp) { continue }
                $key = $null
                if ($c.HasPrivateKey) { $key = Get-XuKeyInfo $c }
                [void]$list.Add([ordered]@{
                    thumbprint = $tp; der_b64 = [Convert]::ToBase64String($c.RawData)
                    has_private_key = $c.HasPrivateKey; friendly_name = $c.FriendlyName; key = $key
                })
            }
        } finally { $st.Close() }
        @{ certificates = $list }
    }
    'pfx_import' = {
        param($a)
        if (-not $a.pfx_b64) { Stop-Xu 'InvalidArgument' 'pfx_b64 is required' }
        $bytes = [Convert]::FromBase64String([string]$a.pfx_b64)
        # A first import without PersistKeySet only learns the thumbprint (its key is deleted again on Reset), so a
        # certificate already in the store keeps its own key, and that key's ACL, and no orphaned key file is left.
        # The password and the PFX bytes go to .NET methods only: a cmdlet's parameters may be logged (module logging).
        $probe = [System.Security.Cryptography.X509Certificates.X509Certificate2Collection]::new()
        $probe.Import($bytes, $a.password, 'MachineKeySet')
        $tp = $null
        # The PFX's intermediate CA certificates are kept as bare certificates (a copy of the DER, no key).
        $cas = [Collections.ArrayList]::new()
        foreach ($c in $probe) {
            if ($null -eq $tp -and $c.HasPrivateKey) { $tp = $c.Thumbprint.ToUpperInvariant() }
            elseif (Test-XuIntermediate $c) { [void]$cas.Add([System.Security.Cryptography.X509Certificates.X509Certificate2]::new($c.RawData)) }
            $c.Reset()
        }
        if ($null -eq $tp) { Stop-Xu 'InvalidArgument' 'the PFX holds no certificate with a private key' }
        $st = Open-XuStore 'My' 'ReadWrite'
        try {
            $present = $null -ne (Find-XuCert $st $tp)
            if (-not $present) {
                $flags = 'MachineKeySet, PersistKeySet'
                if ($a.exportable) { $flags += ', Exportable' }
                $coll = [System.Security.Cryptography.X509Certificates.X509Certificate2Collection]::new()
                $coll.Import($bytes, $a.password, $flags)
                foreach ($c in $coll) { if ($c.Thumbprint -eq $tp) { $st.Add($c) } }
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
        [ordered]@{ thumbprint = $tp; already_present = $present; chain_added = $added }
    }
    'cert_remove' = {
        param($a)
        $tp = ConvertTo-XuThumbprint $a.thumbprint
        # Each listed port is probed first, with port_probe itself: one that does not present its certificate removes nothing.
        foreach ($x in $a.require_served) {
            $port = [int]$x.port
            $want = ConvertTo-XuThumbprint $x.thumbprint
            $seen = & $primitives['port_probe'] (@{ host = 'localhost'; server_name = $x.server_name; port = $port; tls = $true; http_path = $null; timeout_ms = 5000 })
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
        }
        $st = Open-XuStore $a.store 'ReadWrite, OpenExistingOnly'
        try { $c = Find-XuCert $st $tp; if ($null -ne $c) { $st.Remove($c) } } finally { $st.Close() }
        @{ removed = ($null -ne $c) }
    }
    'key_grant_read' = {
        param($a)
        $tp = ConvertTo-XuThumbprint $a.thumbprint
        if (-not $a.account) { Stop-Xu 'InvalidArgument' 'account is required' }
        $st = Open-XuStore 'My' 'ReadOnly'
        try { $c = Find-XuCert $st $tp } finally { $st.Close() }
        if ($null -eq $c -or -not $c.HasPrivateKey) { Stop-Xu 'NotFound' ('no certificate with a private key has thumbprint {0}' -f $tp) }
        $file = (Get-XuKeyFile $c).file
        if (-not $file) { Stop-Xu 'NotFound' ('the private key file of {0} was not found' -f $tp) }
        if ($a.account -match '^S-1-[0-9-]+\z') { $sid = [Security.Principal.SecurityIdentifier]::new($a.account) }
        else { $sid = [Security.Principal.NTAccount]::new($a.account).Translate([Security.Principal.SecurityIdentifier]) }
        # Only the DACL is read and written back (Set-Acl would also rewrite the owner, and fail on SYSTEM-owned keys).
        $sec = [IO.File]::GetAccessControl($file, 'Access')
        foreach ($rule in $sec.GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier])) {
            $rights = Get-XuRightsName ([int]$rule.FileSystemRights)
            if ($rule.AccessControlType -eq 'Allow' -and $rule.IdentityReference.Value -eq $sid.Value -and $rights -in 'Read', 'FullControl') { return @{ changed = $false } }
        }
        $sec.AddAccessRule([Security.AccessControl.FileSystemAccessRule]::new($sid, 'Read', 'Allow'))
        [IO.File]::SetAccessControl($file, $sec)
        @{ changed = $true }
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
        # Under 'Stop', Windows PowerShell turns a native command's first stderr line into a terminating error.
        $ErrorActionPreference = 'Continue'
        $lines = & certreq.exe $certreqArgs 2>&1 | ForEach-Object { [string]$_ }
        $code = $LASTEXITCODE
        $ErrorActionPreference = 'Stop'
        $output = (@($lines) -join "`r`n").Trim()
        if ($code -ne 0) { Stop-Xu 'CertreqFailed' ('certreq exited with {0}: {1}' -f $code, $output) }
        $st = Open-XuStore 'My' 'ReadOnly'
        try {
            $new = $st.Certificates | Where-Object { $_.Thumbprint -ne $tp -and [Convert]::ToBase64String($_.GetPublicKey()) -eq $publicKey } |
                Sort-Object -Property NotBefore -Descending | Select-Object -First 1
        } finally { $st.Close() }
        if ($null -eq $new) { Stop-Xu 'NotFound' ('certreq succeeded but no new certificate with the key of {0} is in the store' -f $tp) }
        [ordered]@{ thumbprint = $new.Thumbprint.ToUpperInvariant(); output = $output }
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
        Write-XuAtomic $path $bytes $backup
        [ordered]@{ sha256 = (Get-XuSha256 $bytes); previous_sha256 = $previous; backup_path = $backup }
    }
    'file_restore' = {
        param($a)
        $backup = Assert-XuPath $a.backup_path 'backup_path'
        $path = Assert-XuPath $a.path 'path'
        if (-not [IO.File]::Exists($backup)) { Stop-Xu 'NotFound' ('backup {0} does not exist' -f $backup) }
        $bytes = Read-XuBytes $backup
        Write-XuAtomic $path $bytes $null
        @{ sha256 = (Get-XuSha256 $bytes) }
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
        $sc = Get-Service -Name $name -ErrorAction SilentlyContinue | Where-Object { $_.Name -eq $name } | Select-Object -First 1
        if ($null -eq $sc) { Stop-Xu 'NotFound' ('service {0} does not exist' -f $name) }
        $limit = 60.0
        if ($null -ne $a.timeout_s) { $limit = [double]$a.timeout_s }
        $ports = @(foreach ($p in $a.wait_ports) { [int]$p })
        $sw = [Diagnostics.Stopwatch]::StartNew()
        $startError = $null
        # The service controller, not Restart-Service: the cmdlet waits for a hanging service without a time limit.
        try {
            if ($sc.Status -ne 'Stopped') {
                if ($sc.Status -ne 'StopPending') { $sc.Stop() }
                $sc.WaitForStatus('Stopped', [TimeSpan]::FromSeconds([Math]::Max(1, $limit - $sw.Elapsed.TotalSeconds)))
            }
            $sc.Start()
            do { Start-Sleep -Milliseconds 250; $sc.Refresh() } while ($sc.Status -eq 'StartPending' -and $sw.Elapsed.TotalSeconds -lt $limit)
            if ($sc.Status -eq 'Stopped') { $startError = 'the service stopped while starting' }
        } catch { $startError = Get-XuMessage $_.Exception }
        $open = @{}
        foreach ($p in $ports) { $open[$p] = $false }
        while ($true) {
            foreach ($p in $ports) { if (-not $open[$p]) { $open[$p] = Test-XuPort 'localhost' $p 500 } }
            $sc.Refresh()
            if ($sc.Status -ne 'Running' -or $open.Values -notcontains $false -or $sw.Elapsed.TotalSeconds -ge $limit) { break }
            Start-Sleep -Milliseconds 500
        }
        $state = $sc.Status.ToString()
        [ordered]@{
            started = ($state -eq 'Running' -and $open.Values -notcontains $false); state = $state; start_error = $startError
            ports = @(foreach ($p in $ports) { [ordered]@{ port = $p; open = [bool]$open[$p] } }); elapsed_s = [Math]::Round($sw.Elapsed.TotalSeconds, 1)
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
                try { $ssl.AuthenticateAsClient($serverName, $null, 'Tls, Tls11, Tls12', $false) } catch { $r.tls_error = Get-XuMessage $_.Exception }
                $r.der_b64 = $seen.der
                if ($null -ne $r.tls_error) { return $r }
                $stream = $ssl
            }
            if ($null -ne $path) {
                $request = [Text.Encoding]::ASCII.GetBytes(("GET {0} HTTP/1.1`r`nHost: {1}:{2}`r`nConnection: close`r`n`r`n" -f $path, $serverName, $port))
                $stream.Write($request, 0, $request.Length)
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
        $rules = [Collections.ArrayList]::new()
        foreach ($fr in @(Get-NetFirewallRule -Group $group -ErrorAction SilentlyContinue)) {
            $pf = Get-NetFirewallPortFilter -AssociatedNetFirewallRule $fr
            $af = Get-NetFirewallAddressFilter -AssociatedNetFirewallRule $fr
            [void]$rules.Add([ordered]@{
                name = [string]$fr.Name; display_name = [string]$fr.DisplayName; direction = $fr.Direction.ToString()
                action = $fr.Action.ToString(); enabled = ($fr.Enabled.ToString() -eq 'True'); protocol = [string]$pf.Protocol
                local_ports = @(foreach ($v in $pf.LocalPort) { [string]$v }); remote_addresses = @(foreach ($v in $af.RemoteAddress) { [string]$v })
            })
        }
        @{ rules = $rules }
    }
    'fw_set' = {
        param($a)
        $group = Assert-XuName $a.group $GroupTaskPattern 'group'
        $wanted = @(foreach ($x in $a.rules) { $x })
        # Every rule is checked before the group is touched, so a bad argument leaves it as it was.
        foreach ($x in $wanted) { if (-not $x.name -or -not $x.display_name) { Stop-Xu 'InvalidArgument' 'every rule needs name and display_name' } }
        $old = @(Get-NetFirewallRule -Group $group -ErrorAction SilentlyContinue)
        if ($old.Count -gt 0) { $null = $old | Remove-NetFirewallRule }
        foreach ($x in $wanted) {
            $p = @{ Name = [string]$x.name; DisplayName = [string]$x.display_name; Group = $group; Direction = 'Inbound'; Action = 'Allow'; Protocol = 'TCP'; Enabled = 'True' }
            if ($x.direction) { $p.Direction = [string]$x.direction }
            if ($x.action) { $p.Action = [string]$x.action }
            if ($x.protocol) { $p.Protocol = [string]$x.protocol }
            if ($x.enabled -eq $false) { $p.Enabled = 'False' }
            $ports = [string[]]@(foreach ($v in $x.local_ports) { [string]$v })
            if ($ports.Count -gt 0) { $p.LocalPort = $ports }
            $remote = [string[]]@(foreach ($v in $x.remote_addresses) { [string]$v })
            if ($remote.Count -gt 0) { $p.RemoteAddress = $remote }
            $null = New-NetFirewallRule @p
        }
        [ordered]@{ removed = $old.Count; added = $wanted.Count }
    }
    'task_get' = {
        param($a)
        $t = Get-XuTask (Assert-XuName $a.name $GroupTaskPattern 'name')
        if ($null -eq $t) { return @{ task = $null } }
        $next = (Get-ScheduledTaskInfo -InputObject $t).NextRunTime
        if ($null -ne $next -and $next.Year -lt 1900) { $next = $null }
        @{ task = [ordered]@{ name = [string]$t.TaskName; state = $t.State.ToString(); next_run_utc = (Format-XuTime $next); description = $t.Description } }
    }
    'task_register' = {
        param($a)
        $name = Assert-XuName $a.name $GroupTaskPattern 'name'
        $group = Assert-XuName $a.fw_group_to_remove $GroupTaskPattern 'fw_group_to_remove'
        $at = ConvertFrom-XuTime $a.run_at_utc
        # The only command line built from request values: two names that matched the pattern (no quotes), quoted anyway.
        $command = "Remove-NetFirewallRule -Group {0} -ErrorAction SilentlyContinue; Unregister-ScheduledTask -TaskName {1} -TaskPath '\' -Confirm:`$false" -f (Format-XuQuoted $group), (Format-XuQuoted $name)
        $task = @{
            TaskName = $name; TaskPath = '\'; Force = $true
            Action = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument ('-NoProfile -NonInteractive -ExecutionPolicy Bypass -Command "' + $command + '"')
            Trigger = New-ScheduledTaskTrigger -Once -At $at.ToLocalTime()
            Principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
            # A start missed while the host was down still happens: the firewall is not left closed.
            Settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -ExecutionTimeLimit (New-TimeSpan -Minutes 10)
        }
        if ($null -ne $a.description) { $task.Description = [string]$a.description }
        $null = Register-ScheduledTask @task
        @{ registered = $true }
    }
    'task_remove' = {
        param($a)
        $name = Assert-XuName $a.name $GroupTaskPattern 'name'
        if ($null -eq (Get-XuTask $name)) { return @{ removed = $false } }
        $null = Unregister-ScheduledTask -TaskName $name -TaskPath '\' -Confirm:$false
        @{ removed = $true }
    }
    'journal_read' = {
        param($a)
        $path = Get-XuJournalPath $a.name
        if (-not [IO.File]::Exists($path)) { return [ordered]@{ exists = $false; content = $null } }
        [ordered]@{ exists = $true; content = (ConvertFrom-XuBytes (Read-XuBytes $path)) }
    }
    'journal_write' = {
        param($a)
        $path = Get-XuJournalPath $a.name
        if ($null -eq $a.content) {
            if ([IO.File]::Exists($path)) { [IO.File]::Delete($path) }
            return @{ path = $path }
        }
        if (-not [IO.Directory]::Exists($JournalDir)) {
            # Every user may create folders in ProgramData: this one is made for SYSTEM and Administrators only.
            $ds = [Security.AccessControl.DirectorySecurity]::new()
            $ds.SetAccessRuleProtection($true, $false)
            foreach ($s in 'S-1-5-18', 'S-1-5-32-544') {
                $sid = [Security.Principal.SecurityIdentifier]::new($s)
                $ds.AddAccessRule([Security.AccessControl.FileSystemAccessRule]::new($sid, 'FullControl', 'ContainerInherit, ObjectInherit', 'None', 'Allow'))
            }
            $null = [IO.Directory]::CreateDirectory($JournalDir, $ds)
        }
        $bytes = $Utf8NoBom.GetBytes([string]$a.content)
        Write-XuAtomic $path $bytes $null
        @{ path = $path }
    }
}

$results = [Collections.ArrayList]::new()
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
        $failed = $true
        $ex = Get-XuInner $_.Exception
        $type = $ex.GetType().Name
        if ($ex.Data.Contains('xu_type')) { $type = $ex.Data['xu_type'] }
        $message = Get-XuMessage $ex
        # Belt and braces: a PFX password never leaves the host, not even inside an error text.
        $secret = $op.args.password
        if ($secret -is [string] -and $secret.Length -gt 0) { $message = $message.Replace($secret, '********') }
        $entry.status = 'error'
        $entry.error = [ordered]@{ type = $type; message = $message }
    }
    $entry.elapsed_ms = [int]$watch.ElapsedMilliseconds
    [void]$results.Add($entry)
}

$json = ConvertTo-Json -InputObject ([ordered]@{ agent = 'xtractuniversal.tls'; protocol = 1; results = $results }) -Compress -Depth 10
# Non-ASCII as \uXXXX, so the answer survives any console code page.
$json = [regex]::Replace($json, '[^\x00-\x7F]', { param($m) '\u{0:x4}' -f [int][char]$m.Value })
# Set this late: earlier it would also decode certreq's output, which is in the OEM code page. No BOM on the pipe.
try { [Console]::OutputEncoding = $Utf8NoBom } catch { $null = $_ }
# The answer is the script's only pipeline output: powershell.exe (winrm, ssh) writes it to stdout, psrp returns it.
$json
# certreq may have left a non-zero exit code behind; the agent itself ran.
$global:LASTEXITCODE = 0
exit 0
