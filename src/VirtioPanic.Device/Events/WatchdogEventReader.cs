using System.Diagnostics.CodeAnalysis;
using System.Threading.Channels;

namespace VirtioPanic.Device.Events;

// The host's view of the event channel: a plain ChannelReader that tells the sink when an event
// has been taken, so the sink can bound what is pending and release parked critical events.
internal sealed class WatchdogEventReader : ChannelReader<WatchdogEvent>
{
    private readonly ChannelReader<WatchdogEvent> _inner;
    private readonly WatchdogEventSink _sink;

    internal WatchdogEventReader(ChannelReader<WatchdogEvent> inner, WatchdogEventSink sink)
    {
        _inner = inner;
        _sink = sink;
    }

    public override Task Completion => _inner.Completion;

    public override bool CanCount => _inner.CanCount;

    public override bool CanPeek => _inner.CanPeek;

    public override int Count => _inner.Count;

    public override bool TryRead([MaybeNullWhen(false)] out WatchdogEvent item)
    {
        if (_inner.TryRead(out item))
        {
            _sink.OnRead();
            return true;
        }

        return false;
    }

    public override bool TryPeek([MaybeNullWhen(false)] out WatchdogEvent item) => _inner.TryPeek(out item);

    public override ValueTask<bool> WaitToReadAsync(CancellationToken cancellationToken = default) => _inner.WaitToReadAsync(cancellationToken);
}
