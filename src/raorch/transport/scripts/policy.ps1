# ---- policy.ps1: GetRegistryPolicy.
# What Group Policy applied, as RSoP logging mode recorded it in WMI (root\rsop\computer, Windows
# XP SP1 and later): RSOP_RegistryPolicySetting (one instance per value a GPO sets or deletes,
# precedence 1 the one that won), RSOP_GPO (the GPO's display name), RSOP_Session (a logged
# session). docs/windows.md, section 15; learn.microsoft.com "RSOP_RegistryPolicySetting class",
# "RSOP_GPO class", "RSoP WMI Classes".

# The keys (as registryKey holds them: relative to HKLM, no hive) whose settings are reported:
# the keys raorch writes. Matched on this constant list, in this script, never on an input, and
# no WQL filter is built at all: a WQL string treats '\' as an escape character.
$RaorchPolicyKeys = @(
    'Software\Policies\Microsoft\Windows NT\Terminal Services',
    'Software\Policies\Microsoft\WindowsFirewall',
    'Software\Microsoft\Ole'
)

# ManagementException.ErrorCode (System.Management.ManagementStatus) when the namespace or a
# class does not exist: nothing was ever logged there (dotnet/runtime, System.Management,
# ManagementStatus: InvalidNamespace 0x8004100E, InvalidClass 0x80041010).
$RaorchWmiMissing = @(-2147217394, -2147217392)

function Test-RaorchPolicyKey([string]$Key) {
    foreach ($prefix in $RaorchPolicyKeys) {
        if ([string]::Equals($Key, $prefix, [StringComparison]::OrdinalIgnoreCase)) { return $true }
        if ($Key.StartsWith($prefix + '\', [StringComparison]::OrdinalIgnoreCase)) { return $true }
    }
    return $false
}

# RSoP logging is on by default and off when "Turn off Resultant Set of Policy logging" wrote
# RSoPLogging = 0 (learn.microsoft.com "Developing an RSoP Management Tool"). Logged data that
# stays in the namespace then is no longer current, so the controller calls it unknown.
function Test-RaorchRsopLogging {
    $regKey = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey('SOFTWARE\Policies\Microsoft\Windows\System', $false)
    if ($null -eq $regKey) { return $true }
    try {
        $value = $regKey.GetValue('RSoPLogging', $null)
    } finally {
        [void]$regKey.Close()
    }
    if ($value -is [int] -and $value -eq 0) { return $false }
    return $true
}

# True when the exception, or one it wraps, is WMI saying that the namespace or class is missing.
# On PowerShell 2.0 an error made terminating by -ErrorAction Stop may arrive as an
# ActionPreferenceStopException, whose ErrorRecord holds the cmdlet's own error (PowerShell
# source, ActionPreferenceStopException.ErrorRecord): that one is looked at too.
function Test-RaorchWmiMissing($Exception) {
    $e = $Exception
    while ($null -ne $e) {
        if ($e -is [System.Management.ManagementException]) {
            if ($RaorchWmiMissing -contains [int]$e.ErrorCode) { return $true }
        }
        if ($e -is [System.Management.Automation.RuntimeException] -and $null -ne $e.ErrorRecord) {
            $inner = $e.ErrorRecord.Exception
            if ($inner -is [System.Management.ManagementException] -and $RaorchWmiMissing -contains [int]$inner.ErrorCode) {
                return $true
            }
        }
        $e = $e.InnerException
    }
    return $false
}

function Invoke-RaorchGetRegistryPolicy($P) {
    $logging = Test-RaorchRsopLogging
    $settings = New-Object System.Collections.ArrayList
    $namespace = 'root\rsop\computer'
    try {
        $sessions = @(Get-WmiObject -Namespace $namespace -Class RSOP_Session)
        $gpoNames = @{}
        foreach ($gpo in @(Get-WmiObject -Namespace $namespace -Class RSOP_GPO)) {
            $gpoNames[[string]$gpo.id] = [string]$gpo.name
        }
        foreach ($setting in @(Get-WmiObject -Namespace $namespace -Class RSOP_RegistryPolicySetting)) {
            $key = [string]$setting.registryKey
            if (-not (Test-RaorchPolicyKey $key)) { continue }
            $gpoId = [string]$setting.GPOID
            $gpoName = ''
            if ($gpoNames.ContainsKey($gpoId)) { $gpoName = $gpoNames[$gpoId] }
            # value is uint8[]: the data as the registry stores it (a REG_SZ in UTF-16LE with its
            # terminating NUL, a REG_DWORD in 4 bytes little-endian); the controller decodes it.
            $value = [byte[]]@()
            if ($null -ne $setting.value) { $value = [byte[]]$setting.value }
            [void]$settings.Add(@{
                Key        = $key
                ValueName  = [string]$setting.valueName
                ValueType  = [int]$setting.valueType
                Value      = $value
                Deleted    = [bool]$setting.deleted
                Precedence = [int]$setting.precedence
                GpoId      = $gpoId
                GpoName    = $gpoName
            })
        }
    } catch {
        if (Test-RaorchWmiMissing $_.Exception) {
            return @{ Logging = $logging; Logged = $false; Settings = (New-Object System.Collections.ArrayList) }
        }
        throw
    }
    return @{ Logging = $logging; Logged = ($sessions.Count -gt 0); Settings = $settings }
}
