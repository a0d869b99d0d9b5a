using System.Text.Json;

namespace VirtioPanic.Hosting.Qmp;

// What became of one QMP command: the monitor's `return` (Ok, with its value), its `error` (with
// the error's class and description, qapi/qmp-spec "Error" response), or no answer at all
// (timeout, the monitor went away, never connected). A result, never an exception: a VM-control
// failure takes the policy's fallback.
internal readonly record struct QmpReply(QmpReplyStatus Status, JsonElement Return, string? ErrorClass, string? ErrorDescription)
{
    internal bool Succeeded => Status == QmpReplyStatus.Ok;

    internal static QmpReply Failed(QmpReplyStatus status, string description) => new(status, default, null, description);

    // One line for the journal and the log: "GenericError: Guest is not running" or "timeout after 5 s".
    internal string Describe() => Status switch
    {
        QmpReplyStatus.Ok => "ok",
        QmpReplyStatus.Error => $"{ErrorClass}: {ErrorDescription}",
        _ => ErrorDescription ?? Status.ToString(),
    };
}

internal enum QmpReplyStatus
{
    Ok,
    Error,
    Timeout,
    Disconnected,
}
