# ---- results.ps1: how an operation fails, and how a failure is classified.
#
# Lists inside results are ArrayLists, not arrays: pypsrp 0.9.1 reads every element of a
# System.Object[] as a generic object and loses a hashtable's entries, while it reads the
# elements of an ArrayList by their own type (raorch/transport/clixml.py).

# Signed HRESULTs (HRESULT_FROM_WIN32 of the Win32 error, i.e. 0x8007xxxx); PowerShell compares
# the signed Int32 that Marshal.GetHRForException and COMException.ErrorCode return.
$RaorchHResult = @{
    AccessDenied     = -2147024891  # 0x80070005, ERROR_ACCESS_DENIED (5)
    NoneMapped       = -2147023564  # 0x80070534, ERROR_NONE_MAPPED (1332)
    TrustFailure     = -2147023107  # 0x800706FD, ERROR_TRUSTED_RELATIONSHIP_FAILURE (1789)
    TrustedDomainFailure = -2147023108  # 0x800706FC, ERROR_TRUSTED_DOMAIN_FAILURE (1788)
    NoSuchAlias      = -2147023520  # 0x80070560, ERROR_NO_SUCH_ALIAS (1376)
    MemberNotInAlias = -2147023519  # 0x80070561, ERROR_MEMBER_NOT_IN_ALIAS (1377)
    MemberInAlias    = -2147023518  # 0x80070562, ERROR_MEMBER_IN_ALIAS (1378)
    GroupNotFound    = -2147022676  # 0x800708AC, NERR_GroupNotFound (2220)
}

# Ends the current operation with an error of a given kind. PowerShell 2.0 has no classes, so
# the kind travels in Exception.Data (an IDictionary every .NET 2.0 exception has).
function Stop-RaorchOp([string]$Kind, [string]$Message) {
    $exception = New-Object System.Exception $Message
    $exception.Data['RaorchErrorKind'] = $Kind
    throw $exception
}

# True when the exception, or one it wraps, carries the given HRESULT. PowerShell wraps a
# failing .NET or COM call in MethodInvocationException / TargetInvocationException, so the
# interesting exception is usually an inner one.
function Test-RaorchHResult($Exception, [int]$HResult) {
    $e = $Exception
    while ($null -ne $e) {
        if ([System.Runtime.InteropServices.Marshal]::GetHRForException($e) -eq $HResult) {
            return $true
        }
        $e = $e.InnerException
    }
    return $false
}

# A system message as Win32Exception.Message has it: FormatMessage's text without its trailing
# periods, spaces and line breaks. Win32Exception trims them (.NET reference source,
# Win32Exception.cs TryGetErrorMessage: drops every trailing char <= ' ' or '.'), while
# NTAccount.Translate throws the untrimmed text ("...failed.`r`n"; ntaccount.cs, via
# win32native.cs GetMessage). Both sides of a comparison go through here (docs/windows.md,
# section 7).
function ConvertTo-RaorchMessageKey([string]$Message) {
    $end = $Message.Length
    while ($end -gt 0) {
        $ch = $Message[$end - 1]
        if ([int]$ch -gt 32 -and $ch -ne [char]'.') { break }
        $end--
    }
    return $Message.Substring(0, $end)
}

# The contract's ErrorKind for an exception (docs/remote-operations.md, "The operations").
function Get-RaorchErrorKind($Exception) {
    # NTAccount.Translate (LsaLookupNames2) and SecurityIdentifier.Translate (LsaLookupSids)
    # report a broken trust as a plain SystemException carrying only the system text of Win32
    # error 1789 (ERROR_TRUSTED_RELATIONSHIP_FAILURE), or of 1788 (ERROR_TRUSTED_DOMAIN_FAILURE)
    # for a trusted domain, in the host's own language; no error code travels with it.
    $trustKeys = @(
        (ConvertTo-RaorchMessageKey (New-Object System.ComponentModel.Win32Exception 1789).Message),
        (ConvertTo-RaorchMessageKey (New-Object System.ComponentModel.Win32Exception 1788).Message)
    )
    $e = $Exception
    while ($null -ne $e) {
        if ($e.Data.Contains('RaorchErrorKind')) { return [string]$e.Data['RaorchErrorKind'] }
        if ($e -is [System.Security.Principal.IdentityNotMappedException]) { return 'NotMapped' }
        if ($e -is [System.ComponentModel.Win32Exception] -and ($e.NativeErrorCode -eq 1789 -or $e.NativeErrorCode -eq 1788)) {
            return 'TrustFailure'
        }
        if ($e.GetType() -eq [System.SystemException]) {
            $key = ConvertTo-RaorchMessageKey $e.Message
            foreach ($trustKey in $trustKeys) {
                if ($key -eq $trustKey) { return 'TrustFailure' }
            }
        }
        if ($e -is [System.UnauthorizedAccessException] -or $e -is [System.Security.SecurityException]) {
            return 'AccessDenied'
        }
        $hr = [System.Runtime.InteropServices.Marshal]::GetHRForException($e)
        if ($hr -eq $RaorchHResult['TrustFailure'] -or $hr -eq $RaorchHResult['TrustedDomainFailure']) {
            return 'TrustFailure'
        }
        if ($hr -eq $RaorchHResult['AccessDenied']) { return 'AccessDenied' }
        if ($hr -eq $RaorchHResult['NoneMapped']) { return 'NotMapped' }
        if ($hr -eq $RaorchHResult['GroupNotFound'] -or $hr -eq $RaorchHResult['NoSuchAlias']) {
            return 'NotFound'
        }
        $e = $e.InnerException
    }
    return 'Failed'
}
