namespace VirtioPanic.GuestDriver.Machine;

/// <summary>One interrupt the controller received, as it recorded it.</summary>
/// <param name="Line">The interrupt line for a line assertion, or -1 for a message-signalled interrupt.</param>
/// <param name="Vector">The vector it raised, or -1 when it raised none (unrouted line, invalid message).</param>
/// <param name="Message">The message for a message-signalled interrupt (default for a line).</param>
/// <param name="Time">The machine clock when it arrived.</param>
public readonly record struct InterruptDelivery(int Line, int Vector, MsiMessage Message, DateTimeOffset Time);
