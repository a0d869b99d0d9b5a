using System.Collections.Immutable;
using VirtioPanic.Device;

namespace VirtioPanic.Hosting.Policy;

// An escalation in progress (DevicePolicyState.Escalation): the plan decided when its trigger came,
// how many of its steps were carried out (Done, the first counts), and when the next is due. A
// step's delay counts from when the step before it finished (PolicyEngine.AfterStep). Immutable;
// at most one per device.
internal sealed record Escalation
{
    internal required EscalationKind Kind { get; init; }

    // The whole sequence in configuration syntax ("inject-nmi; 10s dump; 10s reset").
    internal required string Plan { get; init; }

    internal required long TriggerSequence { get; init; }

    // The device event that started it: the later steps' VmActionContext.Trigger.
    internal WatchdogEvent? Trigger { get; init; }

    // The steps after the first, in order.
    internal required ImmutableArray<EscalationStepPlan> Later { get; init; }

    // Steps carried out so far, the first included (1 ≤ Done < StepCount while it is in progress).
    internal int Done { get; init; } = 1;

    internal required DateTimeOffset Due { get; init; }

    // For a vCPU stall: the stalled vCPUs it waits for.
    internal ImmutableArray<uint> Vcpus { get; init; } = [];

    internal int StepCount => Later.Length + 1;

    internal EscalationStepPlan Next => Later[Done - 1];

    internal EscalationMark Mark(int step) => new(Kind, Plan, TriggerSequence, step, StepCount);
}

// One later step: its delay, the action as decided and the VM-control calls it makes.
internal readonly record struct EscalationStepPlan(TimeSpan After, DecidedAction Action, ImmutableArray<PlannedStep> Calls);

// Which step of which escalation a decision carries out (or, in CancelledEscalation, would have).
// A class, like CancelledEscalation: most decisions carry neither, and a null reference keeps
// PolicyDecision small (allocation-budget.json).
internal sealed record EscalationMark(EscalationKind Kind, string Plan, long TriggerSequence, int Step, int StepCount);

// An escalation stopped before its next step: Next is that step, Code the metric tag, Reason the text.
internal sealed record CancelledEscalation(EscalationMark Next, string NextAction, string Code, string Reason);
