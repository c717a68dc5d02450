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

    # Remote Assistance's server is an optional feature on Server 2008 and later: raserver.exe
    # is in System32 only when it is installed (docs/windows.md, section 10).
    $raServer = [System.IO.File]::Exists([System.IO.Path]::Combine([Environment]::SystemDirectory, 'raserver.exe'))

    # XP / 2003 offers need the Help and Support (helpsvc) and Terminal Services (TermService)
    # services; Win32_Service.StartMode says whether one is Disabled (docs/windows.md,
    # section 10). '' when the service does not exist. The filter is a constant of this script.
    $startModes = @{ helpsvc = ''; TermService = '' }
    foreach ($service in @(Get-WmiObject -Class Win32_Service -Filter "Name='helpsvc' OR Name='TermService'")) {
        foreach ($known in @('helpsvc', 'TermService')) {
            if ([string]$service.Name -eq $known) { $startModes[$known] = [string]$service.StartMode }
        }
    }

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
        # 4 backup DC, 5 primary DC: their local Administrators is the domain's BUILTIN
        # group (Win32_ComputerSystem docs, DomainRole; docs/windows.md, section 9).
        DomainRole   = [int]$cs.DomainRole
        RaServer     = $raServer
        HelpSvcStartMode     = $startModes['helpsvc']
        TermServiceStartMode = $startModes['TermService']
    }
}
