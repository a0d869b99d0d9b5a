namespace VirtioPanic.Hosting.Journal;

// One record to append and what it means for the set of records still pending (the ones a
// rotation carries forward into the next file and a restart reports when nothing resolved them).
// Settles: the id of a deferred decision (a grace window, a crash-kernel deadline, a recovery) that
// this record resolves, 0 for none. SettlesEscalation: the id of a pending "escalation" record
// (the device's escalation after its last step) that this record resolves, 0 for none.
internal readonly record struct JournalItem(byte[] Line, bool FlushToDisk, JournalMarks Marks = JournalMarks.None, long Id = 0, string? DeviceId = null, long Sequence = 0, long Settles = 0, long SettlesEscalation = 0);
