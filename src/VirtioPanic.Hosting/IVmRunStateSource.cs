namespace VirtioPanic.Hosting;

// Implemented by a VM control that can tell the VM's run state (QmpVmControl). The policy service
// journals the state a decision was made for (VmRunning, read without asking: no round trip on the
// panic path) and, after a restart of this process, carries out a decision the journal shows as
// decided but not attempted only once QueryRunStateAsync says the VM is still in that state
// (PolicyService.Recovery.cs). A VM control without it (an in-process hypervisor dies with us)
// gets such decisions reported only.
internal interface IVmRunStateSource
{
    // The run state as last reported (events), without asking; null when unknown (not connected yet).
    bool? VmRunning { get; }

    // Asks the VMM now; null when it cannot say (not reachable, failed, timed out). Never throws but for cancellation.
    Task<VmRunState?> QueryRunStateAsync(CancellationToken cancellationToken);
}
