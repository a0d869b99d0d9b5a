namespace VirtioPanic.Hosting;

/// <summary>
/// Settings of the policy service, bound from the configuration section
/// <see cref="SectionName"/> and validated when the host starts (a bad value stops the start with
/// a message naming its key).
/// </summary>
/// <example>
/// <code>
/// "VirtioPanic": {
///   "JournalPath": "/var/lib/vmm/virtiopanic.jsonl",
///   "Policy": { "OnPanic": "coredump-restart", "OnWatchdog": "reset", "PanicGracePeriod": "00:00:30" },
///   "Devices": { "vm42-wdt": { "OnPanic": "preserve" } }
/// }
/// </code>
/// </example>
public sealed class VirtioPanicOptions
{
    /// <summary>The configuration section the options are bound from.</summary>
    public const string SectionName = "VirtioPanic";

    /// <summary>
    /// The durable event journal (JSON lines): the active file; rotated files are kept beside it as
    /// <c>{JournalPath}.1</c> (newest) to <c>{JournalPath}.{JournalMaxFiles}</c>. Its directory is
    /// created if missing. Give each service instance its own file.
    /// </summary>
    /// <remarks>Defaults to <c>virtiopanic-journal.jsonl</c> in the working directory. Must not be empty.
    /// The journal holds guest panic messages and kernel-log tails: its files are created owner-only
    /// (0600, narrowed to that if found wider) and a directory it creates owner-only (0700).</remarks>
    public string JournalPath { get; set; } = "virtiopanic-journal.jsonl";

    /// <summary>The size at which the active journal file is rotated; the records still pending (not yet acted on) are carried into the new file.</summary>
    /// <remarks>Defaults to 8 MiB. At least 4 KiB, at most 1 GiB. Start-up reads at most this much (plus 1 MiB) of the active file, from its end, whatever its size.</remarks>
    public long JournalMaxFileSize { get; set; } = 8L << 20;

    /// <summary>How many rotated journal files are kept besides the active one; the oldest is deleted.</summary>
    /// <remarks>Defaults to 4. At least 1, at most 100.</remarks>
    public int JournalMaxFiles { get; set; } = 4;

    /// <summary>When the journal forces records to disk.</summary>
    /// <remarks>Defaults to <see cref="JournalDurability.FlushBeforeAction"/>.</remarks>
    public JournalDurability JournalDurability { get; set; } = JournalDurability.FlushBeforeAction;

    /// <summary>Where guest memory dumps go (<c>{DeviceId}-{time}-{sequence}.dump</c>); created when first needed, owner-only (0700).</summary>
    /// <remarks>Defaults to <c>dumps</c> in the working directory. Dumps hold all of guest memory: an existing directory is used as it is, so keep it private.</remarks>
    public string DumpDirectory { get; set; } = "dumps";

    /// <summary>How long one VM-control call may take before it counts as failed and its fallback runs.</summary>
    /// <remarks>Defaults to 30 seconds. Positive, at most 10 minutes. Checked periodically (every quarter of the timeout, at most every second), so a call is cancelled up to that much later.</remarks>
    public TimeSpan ActionTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// After a restart: how long the service waits for a VM's monitor to become reachable before it
    /// gives up on a decision the journal shows as decided but not carried out (it is then reported,
    /// not acted on).
    /// </summary>
    /// <remarks>Defaults to 5 minutes. Positive, at most one day. Only VM controls that can report the VM's run state (<see cref="Qmp.QmpVmControl"/>) get such decisions carried out; see <see cref="UnactedJournalEntry.Recoverable"/>.</remarks>
    public TimeSpan RecoveryTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Whether a guest's write to <c>panic_events</c> (the minimal panic path) is handled on the
    /// vCPU thread that wrote it: the decision, its journal record and the VM-control call start
    /// before the write returns, with no thread-pool hop in between.
    /// </summary>
    /// <remarks>
    /// <para>Defaults to false: every event is handled on the service's own pump.</para>
    /// <para>When true, <see cref="IVmControl"/> calls (and <see cref="PolicyService.EventHandled"/>
    /// handlers) for such a panic may run on the vCPU thread, inside its configuration-space access:
    /// after the transport has released its register lock and before the guest's write completes.
    /// An implementation may act on the VM from there (including resetting the device or its
    /// transport on that thread), but must not block waiting for that vCPU to stop: it should request
    /// the operation and complete the returned task when it is done. The report is taken inline only
    /// when nothing else of that device is queued or being handled; otherwise, and for every other
    /// event, the pump handles it as usual. Each report is handled once, order per device and
    /// "nothing queued is dropped" are unchanged.</para>
    /// </remarks>
    public bool InlinePanicHandling { get; set; }

    /// <summary>The policy of every device without an entry in <see cref="Devices"/>.</summary>
    /// <remarks>Defaults to <see cref="DevicePolicy"/>'s defaults. Configuration section <c>Policy</c>.</remarks>
    public DevicePolicy Policy { get; set; } = new();

    /// <summary>Per-device policies by device id. In configuration each entry starts from <see cref="Policy"/> and overrides only the keys it sets.</summary>
    /// <remarks>Defaults to empty.</remarks>
    public IDictionary<string, DevicePolicy> Devices { get; } = new Dictionary<string, DevicePolicy>(StringComparer.Ordinal);

    /// <summary>The policy configured for a device: its <see cref="Devices"/> entry, else <see cref="Policy"/>.</summary>
    /// <param name="deviceId">The device's id.</param>
    /// <returns>The configured policy.</returns>
    public DevicePolicy PolicyFor(string deviceId) => Devices.TryGetValue(deviceId, out DevicePolicy? policy) ? policy : Policy;
}
