# xtractuniversal.tls bootstrap 1
$ErrorActionPreference = 'Stop'
$xuPayload = $input | Out-String | ConvertFrom-Json
& ([ScriptBlock]::Create($xuPayload.agent)) $xuPayload.request
