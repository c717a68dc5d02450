# ---- firewall.ps1: GetFirewallRules, SetFirewallRule.
# COM HNetCfg.FwPolicy2 (INetFwPolicy2, Vista / Server 2008 and later) rather than the
# NetSecurity cmdlets, which need Windows 8 / Server 2012 (docs/windows.md, section 5).

# What tells one rule of a group from another (docs/windows.md, section 5). Through COM the
# rule id is not reachable, and INetFwRule.Name is the localized display name, which Windows
# ships twice in the Remote Assistance group (one rule for Public, its twin for Domain and
# Private): a rule is these seven properties, as GetFirewallRules reported them.
$RaorchRuleIdentityKeys = @('Name', 'Direction', 'Profiles', 'Protocol', 'LocalPorts', 'ApplicationName', 'ServiceName')
$RaorchRuleIdentityInts = @('Direction', 'Profiles', 'Protocol')

function Get-RaorchFirewallPolicy {
    try {
        return New-Object -ComObject HNetCfg.FwPolicy2
    } catch {
        # XP / 2003 only have HNetCfg.FwMgr: no FwPolicy2 means a legacy host, whose firewall
        # raorch handles through the policy registry instead (docs/remote-operations.md).
        Stop-RaorchOp 'NotFound' "HNetCfg.FwPolicy2 is not available on this host: $($_.Exception.Message)"
    }
}

# The identity of a COM rule. [string] of a property that is null gives "". Direction is
# NET_FW_RULE_DIRECTION (In 1, Out 2), Protocol NET_FW_IP_PROTOCOL (TCP 6, UDP 17, any 256),
# Profiles the NET_FW_PROFILE_TYPE2 mask (Domain 1, Private 2, Public 4; All 0x7FFFFFFF).
function Get-RaorchRuleIdentity($Rule) {
    return @{
        Name            = [string]$Rule.Name
        Direction       = [int]$Rule.Direction
        Profiles        = [int]$Rule.Profiles
        Protocol        = [int]$Rule.Protocol
        LocalPorts      = [string]$Rule.LocalPorts
        ApplicationName = [string]$Rule.ApplicationName
        ServiceName     = [string]$Rule.ServiceName
    }
}

# True when the rule's identity is exactly the wanted one: every key, strings compared
# case-sensitively (-ceq), since the wanted identity is what this host reported.
function Test-RaorchRuleIdentity($Identity, $Wanted) {
    foreach ($key in $RaorchRuleIdentityKeys) {
        if ($RaorchRuleIdentityInts -contains $key) {
            if ([int]$Identity[$key] -ne [int]$Wanted[$key]) { return $false }
        } elseif (-not ([string]$Identity[$key] -ceq [string]$Wanted[$key])) {
            return $false
        }
    }
    return $true
}

function Format-RaorchRuleIdentity($Wanted) {
    $parts = @()
    foreach ($key in $RaorchRuleIdentityKeys) { $parts += "$key '$($Wanted[$key])'" }
    return [string]::Join(', ', $parts)
}

# INetFwPolicy2.LocalPolicyModifyState (NET_FW_MODIFY_STATE: 0 OK, 1 GP_OVERRIDE,
# 2 INBOUND_BLOCKED): whether local rules take effect in the current profile. Vista's
# INetFwPolicy2 has no such property, and strict mode makes reading a missing property an
# error, so it is looked up first; $null when the host does not have it.
function Get-RaorchLocalPolicyModifyState($Policy) {
    $property = $Policy.PSObject.Properties['LocalPolicyModifyState']
    if ($null -eq $property) { return $null }
    return [int]$property.Value
}

function Invoke-RaorchGetFirewallRules($P) {
    $group = [string]$P['Group']
    $policy = Get-RaorchFirewallPolicy
    $rules = New-Object System.Collections.ArrayList
    # Rules are matched on Grouping, the unlocalized group id such as '@FirewallAPI.dll,-33002'
    # (INetFwRule::Grouping); the display name is localized and never matched on.
    foreach ($rule in $policy.Rules) {
        if ($rule.Grouping -eq $group) {
            $entry = Get-RaorchRuleIdentity $rule
            $entry['Enabled'] = [bool]$rule.Enabled
            [void]$rules.Add($entry)
        }
    }
    $state = Get-RaorchLocalPolicyModifyState $policy
    return @{ Group = $group; Rules = $rules; LocalPolicyModifyState = $state }
}

function Invoke-RaorchSetFirewallRule($P) {
    $group = [string]$P['Group']
    $rule = $P['Rule']
    $enabled = $P['Enabled']
    if ($rule -isnot [System.Collections.IDictionary]) {
        Stop-RaorchOp 'Failed' "Rule must be a hashtable of $([string]::Join(', ', $RaorchRuleIdentityKeys))"
    }
    # Copy into a hashtable literal: case-insensitive keys, as the contract says keys are.
    $wanted = @{}
    foreach ($entry in $rule.GetEnumerator()) { $wanted[[string]$entry.Key] = $entry.Value }
    foreach ($key in $RaorchRuleIdentityKeys) {
        if (-not $wanted.ContainsKey($key)) { Stop-RaorchOp 'Failed' "Rule has no key '$key'" }
    }
    $what = Format-RaorchRuleIdentity $wanted
    # [bool]'False' is $true in PowerShell: only a real boolean is accepted.
    if ($enabled -isnot [bool]) { Stop-RaorchOp 'Failed' "Enabled must be a boolean for the rule $what" }
    $policy = Get-RaorchFirewallPolicy
    # Collect first, set after: every rule of the group whose identity is exactly the wanted
    # one (several only if the host holds identical copies, which nothing can tell apart).
    $matched = New-Object System.Collections.ArrayList
    foreach ($candidate in $policy.Rules) {
        if ($candidate.Grouping -eq $group -and (Test-RaorchRuleIdentity (Get-RaorchRuleIdentity $candidate) $wanted)) {
            [void]$matched.Add($candidate)
        }
    }
    if ($matched.Count -eq 0) {
        Stop-RaorchOp 'NotFound' "no firewall rule of group '$group' is exactly $what"
    }
    foreach ($candidate in $matched) { $candidate.Enabled = $enabled }
    return @{}
}
