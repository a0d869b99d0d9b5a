namespace VirtioPanic.Hosting;

/// <summary>A policy action waiting for a deadline; cancelled if the guest resets or reports a shutdown first.</summary>
/// <param name="Kind">What the deadline is for.</param>
/// <param name="Due">When it fires (host time).</param>
/// <param name="TriggerSequence">The sequence number of the event that armed it.</param>
public sealed record PendingDeadline(PendingDeadlineKind Kind, DateTimeOffset Due, long TriggerSequence);
