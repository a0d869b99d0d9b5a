using System.Buffers.Binary;
using VirtioPanic.Device.Timer;

namespace VirtioPanic.Device.Protocol;

// The control request and response on the wire (spec §6.3 "Control requests"; the layout table is
// in WatchdogProtocol). Decoding a command and encoding a result happen here, in the watchdogq
// worker's layer, so the timer's state machine works with WatchdogCommand and
// WatchdogCommandResult only.
internal static class WatchdogControlWire
{
    // A 16-byte request the worker copied out of guest memory (never guest memory itself).
    internal static (ushort Command, uint ValueMs) DecodeRequest(ReadOnlySpan<byte> request) =>
        (BinaryPrimitives.ReadUInt16LittleEndian(request[WatchdogProtocol.ControlRequestCommand..]),
         BinaryPrimitives.ReadUInt32LittleEndian(request[WatchdogProtocol.ControlRequestValueMs..]));

    // False for a command the spec does not define: the device answers UNSUPPORTED and changes nothing.
    internal static bool TryDecodeCommand(ushort wire, out WatchdogCommand command)
    {
        command = wire switch
        {
            WatchdogProtocol.CommandGetStatus => WatchdogCommand.GetStatus,
            WatchdogProtocol.CommandStart => WatchdogCommand.Start,
            WatchdogProtocol.CommandStop => WatchdogCommand.Stop,
            WatchdogProtocol.CommandKeepalive => WatchdogCommand.Keepalive,
            WatchdogProtocol.CommandSetTimeout => WatchdogCommand.SetTimeout,
            WatchdogProtocol.CommandSetPretimeout => WatchdogCommand.SetPretimeout,
            WatchdogProtocol.CommandSetNowayout => WatchdogCommand.SetNowayout,
            _ => WatchdogCommand.GetStatus,
        };

        return wire is >= WatchdogProtocol.CommandGetStatus and <= WatchdogProtocol.CommandSetNowayout;
    }

    internal static ushort EncodeStatus(WatchdogCommandResult result) => result switch
    {
        WatchdogCommandResult.Ok => WatchdogProtocol.StatusOk,
        WatchdogCommandResult.Unsupported => WatchdogProtocol.StatusUnsupported,
        WatchdogCommandResult.Invalid => WatchdogProtocol.StatusInvalid,
        WatchdogCommandResult.Denied => WatchdogProtocol.StatusDenied,
        _ => WatchdogProtocol.StatusNotArmed,
    };

    // Writes struct virtio_wdt_ctrl_resp (ControlResponseSize bytes) with the given wire status.
    internal static void EncodeResponse(in WatchdogControlOutcome outcome, ushort status, Span<byte> encoded)
    {
        ushort flags = 0;
        flags |= outcome.Armed ? WatchdogProtocol.FlagArmed : (ushort)0;
        flags |= outcome.Nowayout ? WatchdogProtocol.FlagNowayout : (ushort)0;
        flags |= outcome.Expired ? WatchdogProtocol.FlagExpired : (ushort)0;
        flags |= outcome.PretimeoutFired ? WatchdogProtocol.FlagPretimeoutFired : (ushort)0;
        BinaryPrimitives.WriteUInt16LittleEndian(encoded[WatchdogProtocol.ControlResponseStatus..], status);
        BinaryPrimitives.WriteUInt16LittleEndian(encoded[WatchdogProtocol.ControlResponseFlags..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(encoded[WatchdogProtocol.ControlResponseTimeoutMs..], WatchdogTimer.ToMilliseconds(outcome.Timeout));
        BinaryPrimitives.WriteUInt32LittleEndian(encoded[WatchdogProtocol.ControlResponsePretimeoutMs..], WatchdogTimer.ToMilliseconds(outcome.Pretimeout));
        BinaryPrimitives.WriteUInt32LittleEndian(encoded[WatchdogProtocol.ControlResponseTimeLeftMs..], WatchdogTimer.ToMilliseconds(outcome.TimeLeft));
    }
}
