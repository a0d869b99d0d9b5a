namespace VirtioPanic.Hosting;

/// <summary>When the journal forces an event record to disk (fsync) relative to acting on it.</summary>
public enum JournalDurability
{
    /// <summary>
    /// The event record is on disk before the VM-control call is made, and the outcome record before
    /// the event counts as handled. Survives a host crash at any point. The default.
    /// </summary>
    FlushBeforeAction,

    /// <summary>
    /// The event record is written to the operating system (it survives the process being killed)
    /// before acting, and forced to disk together with the outcome record, before the event counts as
    /// handled: one fsync per event instead of two, off the panic-to-action path.
    /// </summary>
    FlushAfterAction,
}
