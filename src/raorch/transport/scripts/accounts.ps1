# ---- accounts.ps1: ResolveAccount.

# DOMAIN\name -> SID string, through NTAccount.Translate (.NET 2.0). It throws
# IdentityNotMappedException when the name does not exist and a SystemException carrying
# Win32 error 1789 when the trust relationship is broken; Get-RaorchErrorKind turns those into
# NotMapped and TrustFailure (docs/windows.md, section 7; learn.microsoft.com,
# IdentityReference.Translate).
function Resolve-RaorchAccount([string]$Account) {
    $ntAccount = New-Object System.Security.Principal.NTAccount -ArgumentList $Account
    return $ntAccount.Translate([System.Security.Principal.SecurityIdentifier]).Value
}

function Invoke-RaorchResolveAccount($P) {
    $account = [string]$P['Account']
    $sid = Resolve-RaorchAccount $account
    return @{ Account = $account; Sid = $sid }
}
