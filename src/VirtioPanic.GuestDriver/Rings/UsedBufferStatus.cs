namespace VirtioPanic.GuestDriver.Rings;

/// <summary>What a driver found when reaping the used ring. A well-behaved device only ever produces <see cref="Ok"/> and <see cref="Empty"/>.</summary>
public enum UsedBufferStatus
{
    /// <summary>A used buffer was reaped.</summary>
    Ok,

    /// <summary>Nothing new in the used ring.</summary>
    Empty,

    /// <summary>The device returned an id that is not a head in flight (device bug).</summary>
    InvalidId,

    /// <summary>The device moved the used index further than the number of buffers in flight (device bug).</summary>
    IndexRunaway,
}
