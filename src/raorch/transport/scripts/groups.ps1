# ---- groups.ps1: GetGroup, AddGroupMember, RemoveGroupMember.
# PowerShell 2.0 has no *-LocalGroupMember cmdlets: ADSI's WinNT provider does the work
# (docs/windows.md, section 4; learn.microsoft.com, "WinNT ADsPath").

# A local group by its SID: @{ Name = localized name; Adsi = the group object }. The name is
# localized ("Administratoren", "Administrateurs"), so it is found by translating the
# well-known SID, never by a fixed name.
function Get-RaorchLocalGroup([string]$Sid) {
    try {
        $identifier = New-Object System.Security.Principal.SecurityIdentifier -ArgumentList $Sid
        $account = $identifier.Translate([System.Security.Principal.NTAccount]).Value
    } catch {
        Stop-RaorchOp 'NotFound' "no local group with SID $Sid on this computer: $($_.Exception.Message)"
    }
    $name = $account.Substring($account.LastIndexOf('\') + 1)
    $group = [ADSI]"WinNT://$env:COMPUTERNAME/$name,group"
    return @{ Name = $name; Adsi = $group }
}

# WinNT://DOMAIN/name -> DOMAIN\name; WinNT://DOMAIN/COMPUTER/name (a local account) ->
# COMPUTER\name; WinNT://S-1-5-... (an orphaned SID) stays the SID.
function ConvertFrom-RaorchAdsPath([string]$Path) {
    $parts = $Path.Substring('WinNT://'.Length).Split('/')
    if ($parts.Length -ge 2) { return $parts[$parts.Length - 2] + '\' + $parts[$parts.Length - 1] }
    return $parts[0]
}

# The members of a group: array of @{ Sid; Path; Name }. Name only with $WithNames (GetGroup):
# adding and removing compare SIDs and need no name lookup at all.
function Get-RaorchGroupMembers($Group, [bool]$WithNames) {
    $members = New-Object System.Collections.ArrayList
    $identifiers = New-Object System.Security.Principal.IdentityReferenceCollection
    # IADsGroup.Members through Invoke: the DirectoryEntry adapter has no member list of its own.
    foreach ($member in @($Group.psbase.Invoke('Members'))) {
        $type = $member.GetType()
        $path = [string]$type.InvokeMember('ADsPath', 'GetProperty', $null, $member, $null)
        $sidBytes = [byte[]]$type.InvokeMember('objectSid', 'GetProperty', $null, $member, $null)
        $identifier = New-Object System.Security.Principal.SecurityIdentifier -ArgumentList $sidBytes, 0
        [void]$identifiers.Add($identifier)
        [void]$members.Add(@{ Sid = $identifier.Value; Path = $path; Name = $null })
    }
    if ($WithNames -and $members.Count -gt 0) {
        # Every SID in one IdentityReferenceCollection.Translate, i.e. one LsaLookupSids call,
        # instead of one call per member, each of which would wait again for a trusted domain
        # that does not answer. forceSuccess $false: a SID that does not resolve comes back as
        # itself, in its place, instead of failing the call; a failure of the lookup as a
        # whole (a broken secure channel) throws (docs/windows.md, section 4; .NET reference
        # source, ircollection.cs Translate and sid.cs TranslateToNTAccounts).
        $translated = $null
        try {
            $translated = @($identifiers.Translate([System.Security.Principal.NTAccount], $false))
        } catch {
            $translated = $null
        }
        for ($i = 0; $i -lt $members.Count; $i++) {
            $entry = $members[$i]
            # DOMAIN\name when the SID resolved; the ADsPath otherwise (a deleted account, a
            # domain that cannot be reached, or the whole lookup failed).
            $entry['Name'] = ConvertFrom-RaorchAdsPath $entry['Path']
            if ($null -ne $translated -and $translated[$i] -is [System.Security.Principal.NTAccount]) {
                $entry['Name'] = $translated[$i].Value
            }
        }
    }
    return , $members.ToArray()
}

function Invoke-RaorchGetGroup($P) {
    $sid = [string]$P['Sid']
    $group = Get-RaorchLocalGroup $sid
    $members = New-Object System.Collections.ArrayList
    foreach ($member in (Get-RaorchGroupMembers $group['Adsi'] $true)) {
        [void]$members.Add(@{ Sid = $member['Sid']; Name = $member['Name'] })
    }
    return @{ Sid = $sid; Name = $group['Name']; Members = $members }
}

# Members are added and removed by SID, never by name: 'WinNT://<SID>' names exactly the
# account pre-flight resolved (a name is looked up again by the WinNT provider and may find
# another account: a renamed one, a namesake, a recreated one), as Ansible's
# win_group_membership does (docs/windows.md, section 4).
#
# [void] on Add and Remove: through the DirectoryEntry adapter they return
# DirectoryEntry.Invoke's plain $null, which PowerShell writes to the function's output; the
# function would return @($null, @{}) and the dispatcher would report Failed a write that took
# effect (docs/windows.md, section 8).
function Invoke-RaorchAddGroupMember($P) {
    $group = Get-RaorchLocalGroup ([string]$P['Sid'])
    $identifier = New-Object System.Security.Principal.SecurityIdentifier -ArgumentList ([string]$P['Member'])
    # The SID must still name an account here: IdentityNotMappedException (NotMapped) or a
    # broken trust (TrustFailure) before anything is written.
    [void]$identifier.Translate([System.Security.Principal.NTAccount])
    foreach ($member in (Get-RaorchGroupMembers $group['Adsi'] $false)) {
        # Already a member is success: the state asked for is there.
        if ($member['Sid'] -eq $identifier.Value) { return @{} }
    }
    try {
        [void]$group['Adsi'].Add('WinNT://' + $identifier.Value)
    } catch {
        # Added meanwhile by someone else: also the state asked for.
        if (-not (Test-RaorchHResult $_.Exception $RaorchHResult['MemberInAlias'])) { throw }
    }
    return @{}
}

function Invoke-RaorchRemoveGroupMember($P) {
    $group = Get-RaorchLocalGroup ([string]$P['Sid'])
    $identifier = New-Object System.Security.Principal.SecurityIdentifier -ArgumentList ([string]$P['Member'])
    foreach ($member in (Get-RaorchGroupMembers $group['Adsi'] $false)) {
        if ($member['Sid'] -eq $identifier.Value) {
            try {
                # The SID raorch added: also when its account was renamed or deleted since (an
                # orphaned SID), and never a new account that took its name.
                [void]$group['Adsi'].Remove('WinNT://' + $identifier.Value)
            } catch {
                if (-not (Test-RaorchHResult $_.Exception $RaorchHResult['MemberNotInAlias'])) { throw }
            }
        }
    }
    # Not a member is success.
    return @{}
}
