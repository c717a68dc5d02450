# ---- firewall.ps1: GetFirewallRules, SetFirewallRule.
# COM HNetCfg.FwPolicy2 (INetFwPolicy2, Vista / Server 2008 and later) rather than the
# NetSecurity cmdlets, which need Windows 8 / Server 2012 (docs/windows.md, section 5).

function Get-RaorchFirewallPolicy {
    try {
        return New-Object -ComObject HNetCfg.FwPolicy2
    } catch {
        # XP / 2003 only have HNetCfg.FwMgr: no FwPolicy2 means a legacy host, whose firewall
        # raorch handles through the policy registry instead (docs/remote-operations.md).
        Stop-RaorchOp 'NotFound' "HNetCfg.FwPolicy2 is not available on this host: $($_.Exception.Message)"
    }
}

function Invoke-RaorchGetFirewallRules($P) {
    $group = [string]$P['Group']
    $policy = Get-RaorchFirewallPolicy
    $rules = New-Object System.Collections.ArrayList
    # Rules are matched on Grouping, the unlocalized group id such as '@FirewallAPI.dll,-33002'
    # (INetFwRule::Grouping); the display name is localized and never matched on.
    foreach ($rule in $policy.Rules) {
        if ($rule.Grouping -eq $group) {
            # Profiles: NET_FW_PROFILE_TYPE2 mask (Domain 1, Private 2, Public 4; All 0x7FFFFFFF).
            [void]$rules.Add(@{ Name = [string]$rule.Name; Enabled = [bool]$rule.Enabled; Profiles = [int]$rule.Profiles })
        }
    }
    return @{ Group = $group; Rules = $rules }
}

function Invoke-RaorchSetFirewallRule($P) {
    $group = [string]$P['Group']
    $name = [string]$P['Rule']
    $enabled = $P['Enabled']
    # [bool]'False' is $true in PowerShell: only a real boolean is accepted.
    if ($enabled -isnot [bool]) { Stop-RaorchOp 'Failed' "Enabled must be a boolean for rule '$name'" }
    $policy = Get-RaorchFirewallPolicy
    $found = 0
    foreach ($rule in $policy.Rules) {
        if ($rule.Grouping -eq $group -and $rule.Name -eq $name) {
            # Every rule of the group with that name: INetFwRule::Name is not unique.
            $rule.Enabled = $enabled
            $found++
        }
    }
    if ($found -eq 0) { Stop-RaorchOp 'NotFound' "no firewall rule '$name' in group '$group'" }
    return @{}
}
