namespace VirtioPanic.GuestDriver.Watchdog;

/// <summary>How a panic, crash-loaded or shutdown report reached the device.</summary>
public enum PanicReportPath
{
    /// <summary>Neither path was available: nothing was reported.</summary>
    None,

    /// <summary>An event record on <c>eventq</c>, which the device ACCEPTED.</summary>
    EventRecord,

    /// <summary>A write to <c>panic_events</c> (the minimal path).</summary>
    ConfigField,
}
