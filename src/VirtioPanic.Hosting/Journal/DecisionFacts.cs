namespace VirtioPanic.Hosting.Journal;

// What a decision record carries so that a restart can tell whether to carry it out
// (PolicyService.Recovery.cs): VmRunning, the VM's run state the decision was made for (null:
// unknown, and such a decision is only ever reported); Deferred, the deadline the decision armed
// (a grace window, a crash kernel's) with DeferredAction, what was due then; Settles, the id of
// this run's deferred decision that this record resolves (0 for none); SettlesEscalation, the id
// of this run's pending "escalation" record that this decision advances, cancels or replaces (0 for none).
internal readonly record struct DecisionFacts(bool? VmRunning, PendingDeadline? Deferred, string? DeferredAction, long Settles, long SettlesEscalation = 0);
