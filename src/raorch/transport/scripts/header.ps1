# raorch-batch v1
#
# The one script raorch runs on a host (docs/remote-operations.md, "One pipeline = one batch").
# The transport joins the files of this folder in a fixed order (header, results, facts,
# registry, accounts, groups, firewall, tasks, policy, dispatch) into a constant text; every
# input arrives through the remoting parameter below and is never pasted into this text.
#
# It must run on PowerShell 2.0 (Windows XP / Server 2003 with WMF 2.0), so it uses WMI, ADSI,
# COM and [Microsoft.Win32.Registry] only (docs/windows.md, section 8).
param($Operations)

# Strict mode 2.0 turns a read of an unset variable or of a missing property into an error
# instead of a silent $null, so a typo here cannot become a wrong value written to a host
# (about_Set-StrictMode).
Set-StrictMode -Version 2.0

# Every error becomes terminating, so the try/catch around each operation sees it and the
# operation reports it, instead of a non-terminating error going past it
# (about_Preference_Variables, $ErrorActionPreference).
$ErrorActionPreference = 'Stop'
