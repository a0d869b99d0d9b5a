using System.Text.Json;

namespace VirtioPanic.Hosting.Qmp;

// An asynchronous QMP event (qapi/qmp-spec "Asynchronous events"): its name and its `data`
// (a clone owned by the event, an empty object when the event had none).
internal sealed record QmpEvent(string Name, JsonElement Data);
