namespace VirtioPanic.Device.Tests.Rig;

// An eventq buffer the test driver posted: where the record and its status live.
internal sealed record PostedRecord(ushort Head, ulong RecordAddress, uint RecordLength, ulong StatusAddress, uint StatusLength);
