# xtractuniversal.tls bootstrap 1
if ($ExecutionContext.SessionState.LanguageMode -ne 'FullLanguage') { throw ("xtractuniversal.tls needs PowerShell's FullLanguage mode; this session runs in {0} (AppLocker or WDAC policy)" -f $ExecutionContext.SessionState.LanguageMode) }
$ErrorActionPreference = 'Stop'
# stdin may carry a PFX password: no cmdlet ever sees it (module logging records bindings), .NET alone reads it.
$xuLines = [Collections.Generic.List[string]]::new()
foreach ($xuLine in $input) { $xuLines.Add([string]$xuLine) }
Add-Type -AssemblyName System.Web.Extensions
$xuJson = [System.Web.Script.Serialization.JavaScriptSerializer]::new()
$xuJson.MaxJsonLength = [int]::MaxValue
try { $xuPayload = $xuJson.DeserializeObject([string]::Join("`n", $xuLines.ToArray())) } catch { throw 'the payload on stdin is not JSON' }
& ([ScriptBlock]::Create($xuPayload.agent)) $xuPayload.request
