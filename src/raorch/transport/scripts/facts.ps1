# ---- facts.ps1: GetFacts.

function Invoke-RaorchGetFacts($P) {
    # Get-WmiObject, not Get-CimInstance: CIM cmdlets need PowerShell 3.0.
    $os = Get-WmiObject -Class Win32_OperatingSystem | Select-Object -First 1
    $cs = Get-WmiObject -Class Win32_ComputerSystem | Select-Object -First 1

    # OperatingSystemSKU exists from Vista / Server 2008 on (Win32_OperatingSystem docs); on
    # XP / 2003 the property is missing and strict mode would make reading it an error.
    $sku = 0
    if ($null -ne $os.PSObject.Properties['OperatingSystemSKU'] -and $null -ne $os.OperatingSystemSKU) {
        $sku = [int]$os.OperatingSystemSKU
    }

    # A 32-bit PowerShell on 64-bit Windows sees SOFTWARE\WOW6432Node and .NET 2.0 has no
    # RegistryView; WOW64 sets PROCESSOR_ARCHITEW6432 for 32-bit processes only
    # (learn.microsoft.com, "WOW64 Implementation Details"; docs/windows.md, pitfalls).
    $wow64 = -not [string]::IsNullOrEmpty($env:PROCESSOR_ARCHITEW6432)

    return @{
        OsVersion    = [string]$os.Version
        Caption      = [string]$os.Caption
        Sku          = $sku
        PsVersion    = $PSVersionTable.PSVersion.ToString()
        PartOfDomain = [bool]$cs.PartOfDomain
        Domain       = [string]$cs.Domain
        # The installed UI language, not CurrentUICulture: a remoting session takes the
        # client's culture (pypsrp sends en-US), but local group names follow the OS language.
        Language     = [System.Globalization.CultureInfo]::InstalledUICulture.Name
        ComputerName = [string]$env:COMPUTERNAME
        Wow64        = $wow64
    }
}
