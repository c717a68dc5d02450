# ---- tasks.ps1: RunScheduledTask.
# COM Schedule.Service (Task Scheduler 2.0, Vista / Server 2008 and later) rather than
# schtasks.exe: typed errors (HRESULTs), the task's state and LastTaskResult, no localized text
# to parse (docs/windows.md, section 11).

$RaorchTaskHResult = @{
    FileNotFound = -2147024894  # 0x80070002, no such task
    PathNotFound = -2147024893  # 0x80070003, no such task folder
}

function Invoke-RaorchRunScheduledTask($P) {
    $path = [string]$P['Path']
    $wait = [int]$P['WaitSeconds']
    $split = $path.LastIndexOf('\')
    if ($split -lt 0) { Stop-RaorchOp 'Failed' "task path '$path' does not start with '\'" }
    $folderPath = $path.Substring(0, $split)
    if ($folderPath -eq '') { $folderPath = '\' }
    $name = $path.Substring($split + 1)
    try {
        $service = New-Object -ComObject Schedule.Service
    } catch {
        # XP / 2003 have Task Scheduler 1.0 only (no Schedule.Service): not a host with the task.
        Stop-RaorchOp 'NotFound' "Task Scheduler 2.0 (Schedule.Service) is not available on this host: $($_.Exception.Message)"
    }
    # COM calls through IDispatch return $null, which would be written as output: [void].
    [void]$service.Connect()
    try {
        $task = $service.GetFolder($folderPath).GetTask($name)
    } catch {
        $e = $_.Exception
        if ((Test-RaorchHResult $e $RaorchTaskHResult['FileNotFound']) -or (Test-RaorchHResult $e $RaorchTaskHResult['PathNotFound'])) {
            Stop-RaorchOp 'NotFound' "no scheduled task '$path' on this host: $($e.Message)"
        }
        throw
    }
    # Run returns without error but runs nothing when the task forbids a demand start
    # (IRegisteredTask::Run); a disabled task fails with SCHED_E_TASK_DISABLED.
    if (-not $task.Definition.Settings.AllowDemandStart) {
        Stop-RaorchOp 'Failed' "the scheduled task '$path' does not allow a start on demand"
    }
    # LastRunTime has whole seconds: a run that starts now is not older than this.
    $started = [DateTime]::Now.AddSeconds(-1)
    $running = $task.Run($null)
    $instance = [string]$running.InstanceGuid
    $deadline = [DateTime]::Now.AddSeconds($wait)
    $active = $true
    while ($active -and [DateTime]::Now -lt $deadline) {
        Start-Sleep -Milliseconds 250
        $active = $false
        foreach ($other in $task.GetInstances(0)) {
            if ([string]$other.InstanceGuid -eq $instance) { $active = $true }
        }
        # TASK_STATE: 2 queued, 4 running (learn.microsoft.com, TASK_STATE enumeration).
        $state = [int]$task.State
        if ($state -eq 2) { $active = $true }
        if (-not $active -and $task.LastRunTime -lt $started) { $active = $true }
    }
    if ($active) {
        Stop-RaorchOp 'Failed' "the scheduled task '$path' was still running or had not started after $wait s"
    }
    $result = [int]$task.LastTaskResult
    if ($result -ne 0) {
        Stop-RaorchOp 'Failed' ("the scheduled task '$path' ended with result 0x" + $result.ToString('X8'))
    }
    return @{ Path = $path; LastResult = $result }
}
