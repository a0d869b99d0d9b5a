using Microsoft.Extensions.Logging;

namespace VirtioPanic.Hosting;

// The restart recovery's lines (PolicyService.Recovery.cs): a decision an earlier run made but did
// not carry out, carried out now or reported. One line per such decision and start: not limited.
internal static partial class VirtioPanicLog
{
    [LoggerMessage(EventId = 6060, Level = LogLevel.Warning, Message = "{DeviceId}: {Action} was decided on {Name} (sequence {Sequence}, run {Run}) for a {State} VM and not carried out; it will be once the VMM is reachable, if the VM is still {State}")]
    internal static partial void RecoveryPending(ILogger logger, string deviceId, string action, string name, long sequence, string run, string state);

    [LoggerMessage(EventId = 6061, Level = LogLevel.Warning, Message = "{DeviceId}: carrying out {Action} decided on {Name} (sequence {Sequence}) by an earlier run: the VM is still {State}")]
    internal static partial void RecoveryActing(ILogger logger, string deviceId, string action, string name, long sequence, string state);

    [LoggerMessage(EventId = 6062, Level = LogLevel.Warning, Message = "{DeviceId}: {Action} decided on {Name} (sequence {Sequence}) by an earlier run was deferred until {Due:O}; its deadline is armed again: the VM is still {State}")]
    internal static partial void RecoveryRearmed(ILogger logger, string deviceId, string action, string name, long sequence, DateTimeOffset due, string state);

    [LoggerMessage(EventId = 6063, Level = LogLevel.Error, Message = "{DeviceId}: {Action} decided on {Name} (sequence {Sequence}) by an earlier run was not carried out: {Reason}")]
    internal static partial void RecoveryNotActed(ILogger logger, string deviceId, string action, string name, long sequence, string reason);

    [LoggerMessage(EventId = 6064, Level = LogLevel.Warning, Message = "{DeviceId}: the {Kind} escalation '{Plan}' of run {Run} had carried out step {Step} of {StepCount}; {NextAction} was due at {Due:O}; it resumes once the VMM is reachable, if the VM is still in the state it was planned for")]
    internal static partial void EscalationPending(ILogger logger, string deviceId, string kind, string plan, int step, int stepCount, string nextAction, DateTimeOffset due, string run);

    [LoggerMessage(EventId = 6065, Level = LogLevel.Warning, Message = "{DeviceId}: resuming the {Kind} escalation '{Plan}' of an earlier run after step {Step} of {StepCount}: {NextAction} at {Due:O}; the VM is still {State}")]
    internal static partial void EscalationResumed(ILogger logger, string deviceId, string kind, string plan, int step, int stepCount, string nextAction, DateTimeOffset due, string state);

    [LoggerMessage(EventId = 6066, Level = LogLevel.Error, Message = "{DeviceId}: the {Kind} escalation '{Plan}' of an earlier run (step {Step} of {StepCount} done, {NextAction} next) is not resumed: {Reason}")]
    internal static partial void EscalationNotResumed(ILogger logger, string deviceId, string kind, string plan, int step, int stepCount, string nextAction, string reason);
}
