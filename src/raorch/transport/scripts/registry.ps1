# ---- registry.ps1: ReadValues, ListKey, SetValue, DeleteValue, DeleteKey.
# [Microsoft.Win32.Registry] (.NET 2.0) rather than the registry provider: it gives the value
# kind and the unexpanded data, which a snapshot needs to restore exactly what was there.

# 'HKLM\SOFTWARE\...' -> 'SOFTWARE\...' (only HKLM is used: docs/remote-operations.md).
function Get-RaorchHklmPath([string]$Key) {
    if ($Key -match '^(HKLM|HKEY_LOCAL_MACHINE)\\(.+)$') {
        return $matches[2].TrimEnd('\')
    }
    Stop-RaorchOp 'Failed' "registry key '$Key' is not under HKLM\"
}

# One value as the wire carries it: Name, Type (reg.exe's name of the kind), Data.
function Get-RaorchValue($RegKey, [string]$Name, [string]$ReportName) {
    # GetValue would expand %VARIABLES% in REG_EXPAND_SZ data; a snapshot must keep the text
    # verbatim (RegistryValueOptions.DoNotExpandEnvironmentNames, .NET 2.0; docs/windows.md,
    # pitfalls).
    $options = [Microsoft.Win32.RegistryValueOptions]::DoNotExpandEnvironmentNames
    $data = $RegKey.GetValue($Name, $null, $options)
    $kind = [string]$RegKey.GetValueKind($Name)
    $type = $null
    $value = $null
    switch ($kind) {
        'String' { $type = 'REG_SZ'; $value = [string]$data }
        'ExpandString' { $type = 'REG_EXPAND_SZ'; $value = [string]$data }
        # .NET returns REG_DWORD as a signed Int32 and REG_QWORD as Int64 (0xFFFFFFFF is -1);
        # the wire keeps them signed and the controller turns them back.
        'DWord' { $type = 'REG_DWORD'; $value = [int]$data }
        'QWord' { $type = 'REG_QWORD'; $value = [long]$data }
        'MultiString' {
            $type = 'REG_MULTI_SZ'
            if ($null -eq $data) { $value = [string[]]@() } else { $value = [string[]]$data }
        }
        'Binary' {
            $type = 'REG_BINARY'
            if ($null -eq $data) { $value = [byte[]]@() } else { $value = [byte[]]$data }
        }
        # REG_NONE and the resource kinds: .NET 2.0 calls them Unknown and returns raw bytes.
        # The controller refuses to snapshot what it could not restore.
        default { $type = 'REG_' + $kind.ToUpper(); $value = $data }
    }
    return @{ Name = $ReportName; Type = $type; Data = $value }
}

# The state of a key: whether it exists and the values asked for ($Names), or all of them
# when $Names is $null. A value that exists with empty data and an absent value differ, so
# only values that exist are listed (docs/windows.md, pitfalls).
function Read-RaorchKey([string]$Key, $Names) {
    $path = Get-RaorchHklmPath $Key
    $values = New-Object System.Collections.ArrayList
    $regKey = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($path, $false)
    if ($null -eq $regKey) {
        return @{ Key = $Key; Exists = $false; Values = $values }
    }
    try {
        # Value names are case-insensitive; a PowerShell hashtable literal is too. The default
        # value is the name ''.
        $present = @{}
        foreach ($stored in $regKey.GetValueNames()) { $present[$stored] = $stored }
        if ($null -eq $Names) {
            foreach ($stored in $regKey.GetValueNames()) {
                [void]$values.Add((Get-RaorchValue $regKey $stored $stored))
            }
        } else {
            # Reported under the name that was asked for, so the controller finds it there.
            foreach ($asked in $Names) {
                $asked = [string]$asked
                if ($present.ContainsKey($asked)) {
                    [void]$values.Add((Get-RaorchValue $regKey $present[$asked] $asked))
                }
            }
        }
    } finally {
        [void]$regKey.Close()
    }
    return @{ Key = $Key; Exists = $true; Values = $values }
}

function Invoke-RaorchReadValues($P) {
    # @() so that one name, or none, is still a list. An empty Names is an existence probe;
    # a null one (an empty list may arrive as $null) must not become @($null), which would
    # ask for the default value.
    $names = @()
    if ($null -ne $P['Names']) { $names = @($P['Names']) }
    return Read-RaorchKey ([string]$P['Key']) $names
}

function Invoke-RaorchListKey($P) {
    return Read-RaorchKey ([string]$P['Key']) $null
}

function Invoke-RaorchSetValue($P) {
    $path = Get-RaorchHklmPath ([string]$P['Key'])
    $name = [string]$P['Name']
    $type = [string]$P['Type']
    $data = $P['Data']
    $kind = $null
    $value = $null
    # RegistryKey.SetValue needs the exact .NET type for each kind: Int32 for DWord, Int64
    # for QWord, String[] for MultiString, Byte[] for Binary (RegistryKey.SetValue docs).
    switch ($type) {
        'REG_SZ' { $kind = [Microsoft.Win32.RegistryValueKind]::String; $value = [string]$data }
        'REG_EXPAND_SZ' {
            $kind = [Microsoft.Win32.RegistryValueKind]::ExpandString; $value = [string]$data
        }
        'REG_DWORD' { $kind = [Microsoft.Win32.RegistryValueKind]::DWord; $value = [int]$data }
        'REG_QWORD' { $kind = [Microsoft.Win32.RegistryValueKind]::QWord; $value = [long]$data }
        'REG_MULTI_SZ' {
            $kind = [Microsoft.Win32.RegistryValueKind]::MultiString
            if ($null -eq $data) { $value = [string[]]@() } else { $value = [string[]]@($data) }
        }
        'REG_BINARY' {
            $kind = [Microsoft.Win32.RegistryValueKind]::Binary
            if ($null -eq $data) { $value = [byte[]]@() } else { $value = [byte[]]$data }
        }
        default { Stop-RaorchOp 'Failed' "unknown registry type '$type' for value '$name'" }
    }
    # CreateSubKey opens the key for writing, creating it and its missing parents.
    $regKey = [Microsoft.Win32.Registry]::LocalMachine.CreateSubKey($path)
    try {
        [void]$regKey.SetValue($name, $value, $kind)
    } finally {
        [void]$regKey.Close()
    }
    return @{}
}

function Invoke-RaorchDeleteValue($P) {
    $path = Get-RaorchHklmPath ([string]$P['Key'])
    $regKey = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($path, $true)
    # An absent key or value is success: the state asked for is already there.
    if ($null -eq $regKey) { return @{} }
    try {
        [void]$regKey.DeleteValue([string]$P['Name'], $false)
    } finally {
        [void]$regKey.Close()
    }
    return @{}
}

# Delete a key only when it is empty (no values, no subkeys): rollback removes the keys that
# SetValue created, and must never remove one that holds something it did not put there.
# An absent key is success; a key that is not empty is left alone, and success too.
function Invoke-RaorchDeleteKey($P) {
    $key = [string]$P['Key']
    $path = Get-RaorchHklmPath $key
    $cut = $path.LastIndexOf('\')
    # A key right under HKLM (SOFTWARE, SYSTEM) is never raorch's to delete.
    if ($cut -lt 1) { Stop-RaorchOp 'Failed' "registry key '$key' is a root key of HKLM" }
    $regKey = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($path, $false)
    if ($null -eq $regKey) { return @{ Key = $key; Deleted = $false } }
    try {
        $empty = ($regKey.ValueCount -eq 0 -and $regKey.SubKeyCount -eq 0)
    } finally {
        [void]$regKey.Close()
    }
    if (-not $empty) { return @{ Key = $key; Deleted = $false } }
    $parent = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($path.Substring(0, $cut), $true)
    if ($null -eq $parent) { return @{ Key = $key; Deleted = $false } }
    try {
        # throwOnMissingSubKey $false: removed in the meantime is the state asked for.
        [void]$parent.DeleteSubKey($path.Substring($cut + 1), $false)
    } finally {
        [void]$parent.Close()
    }
    return @{ Key = $key; Deleted = $true }
}
