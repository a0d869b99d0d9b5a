namespace VirtioPanic.Hosting.Journal;

// What a record does to the pending set (see JournalItem).
[Flags]
internal enum JournalMarks
{
    None = 0,

    // An acting decision: pending until the outcome with the same id.
    Opens = 1,

    // An outcome: resolves the decision with the same id.
    Closes = 2,

    // An event the device accepted (journal on acceptance): pending until a decision on the same
    // device with the same or a later sequence number.
    Accepts = 4,

    // A decision on (DeviceId, Sequence): resolves that device's accepted events up to Sequence.
    Decides = 8,
}
