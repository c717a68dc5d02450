# ---- dispatch.ps1: check the batch, run each operation, write one result per operation.

# Each operation: the parameter keys it needs, whether it writes, the function that runs it
# (docs/remote-operations.md, "The operations").
$RaorchOperationTable = @{
    GetFacts          = @{ Params = @(); Write = $false; Function = 'Invoke-RaorchGetFacts' }
    ResolveAccount    = @{ Params = @('Account'); Write = $false; Function = 'Invoke-RaorchResolveAccount' }
    ReadValues        = @{ Params = @('Key', 'Names'); Write = $false; Function = 'Invoke-RaorchReadValues' }
    ListKey           = @{ Params = @('Key'); Write = $false; Function = 'Invoke-RaorchListKey' }
    SetValue          = @{ Params = @('Key', 'Name', 'Type', 'Data'); Write = $true; Function = 'Invoke-RaorchSetValue' }
    DeleteValue       = @{ Params = @('Key', 'Name'); Write = $true; Function = 'Invoke-RaorchDeleteValue' }
    DeleteKey         = @{ Params = @('Key'); Write = $true; Function = 'Invoke-RaorchDeleteKey' }
    GetGroup          = @{ Params = @('Sid'); Write = $false; Function = 'Invoke-RaorchGetGroup' }
    AddGroupMember    = @{ Params = @('Sid', 'Member'); Write = $true; Function = 'Invoke-RaorchAddGroupMember' }
    RemoveGroupMember = @{ Params = @('Sid', 'Member'); Write = $true; Function = 'Invoke-RaorchRemoveGroupMember' }
    GetFirewallRules  = @{ Params = @('Group'); Write = $false; Function = 'Invoke-RaorchGetFirewallRules' }
    SetFirewallRule   = @{ Params = @('Group', 'Rule', 'Enabled'); Write = $true; Function = 'Invoke-RaorchSetFirewallRule' }
    RunScheduledTask  = @{ Params = @('Path', 'WaitSeconds'); Write = $true; Function = 'Invoke-RaorchRunScheduledTask' }
    GetRegistryPolicy = @{ Params = @(); Write = $false; Function = 'Invoke-RaorchGetRegistryPolicy' }
}

# Check the whole batch before running any of it: an unknown Op or a missing key fails the
# pipeline (state Failed, an error record) before anything is written, never a silent success.
if ($null -eq $Operations) { throw 'raorch batch: the Operations parameter is missing' }
$raorchBatch = New-Object System.Collections.ArrayList
$raorchIndex = 0
foreach ($raorchOperation in @($Operations)) {
    if ($raorchOperation -isnot [System.Collections.IDictionary]) {
        throw "raorch batch: operation $raorchIndex is not a hashtable"
    }
    # Copy into a hashtable literal: its keys are case-insensitive, as the contract says keys
    # are, whatever dictionary the remoting layer built.
    $raorchParams = @{}
    foreach ($raorchEntry in $raorchOperation.GetEnumerator()) {
        $raorchParams[[string]$raorchEntry.Key] = $raorchEntry.Value
    }
    if (-not $raorchParams.ContainsKey('Op')) { throw "raorch batch: operation $raorchIndex has no key 'Op'" }
    $raorchSpec = $RaorchOperationTable[[string]$raorchParams['Op']]
    if ($null -eq $raorchSpec) {
        throw "raorch batch: operation $raorchIndex has an unknown Op '$($raorchParams['Op'])'"
    }
    foreach ($raorchKey in $raorchSpec['Params']) {
        if (-not $raorchParams.ContainsKey($raorchKey)) {
            throw "raorch batch: operation $raorchIndex ($($raorchParams['Op'])) has no key '$raorchKey'"
        }
    }
    [void]$raorchBatch.Add($raorchParams)
    $raorchIndex++
}

# Run. Reads that fail report and the batch goes on; the first write that fails stops it and
# every later operation is NotRun (docs/windows.md: one operation failing must not hide
# which one it was).
$raorchFailedWrite = $null
for ($raorchIndex = 0; $raorchIndex -lt $raorchBatch.Count; $raorchIndex++) {
    $raorchParams = $raorchBatch[$raorchIndex]
    $raorchSpec = $RaorchOperationTable[[string]$raorchParams['Op']]
    # The canonical name of the operation, whatever case it was sent in.
    $raorchName = [string]$raorchSpec['Function'].Substring('Invoke-Raorch'.Length)
    $raorchResult = @{ Op = $raorchName; Ok = $false; ErrorKind = $null; Error = $null }
    if ($null -ne $raorchFailedWrite) {
        $raorchResult['ErrorKind'] = 'NotRun'
        $raorchResult['Error'] = "not run: the earlier write $raorchFailedWrite failed"
    } else {
        try {
            $raorchFunction = [string]$raorchSpec['Function']
            $raorchData = & $raorchFunction $raorchParams
            # A stray value written by an operation would make this an array: refuse it rather
            # than send a result that is not what the operation produced.
            if ($raorchData -isnot [System.Collections.IDictionary]) {
                throw "raorch batch: $raorchName produced something else than one result"
            }
            foreach ($raorchEntry in $raorchData.GetEnumerator()) {
                $raorchResult[[string]$raorchEntry.Key] = $raorchEntry.Value
            }
            $raorchResult['Ok'] = $true
        } catch {
            $raorchResult['ErrorKind'] = Get-RaorchErrorKind $_.Exception
            $raorchResult['Error'] = $_.Exception.Message
            if ($raorchSpec['Write']) { $raorchFailedWrite = "$raorchIndex ($raorchName)" }
        }
    }
    # A hashtable is written as one object: PowerShell does not enumerate dictionaries.
    $raorchResult
}
