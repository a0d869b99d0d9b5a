namespace VirtioPanic.Device;

/// <summary>Which guest path delivered a report.</summary>
public enum WatchdogEventSource
{
    /// <summary>The minimal path: a write to <c>panic_events</c> in the configuration space (no payload).</summary>
    ConfigField,

    /// <summary>A rich record on the event queue.</summary>
    EventRecord,

    /// <summary>A committed record found in a held buffer when the device was reset (its notification never arrived); the buffer was not written.</summary>
    EventRecordAtReset,
}
