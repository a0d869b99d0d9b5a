using Microsoft.Extensions.Logging;
using VirtioPanic.RateLimiting;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.Transport;

// Counts and (rate-limited) logs what a guest did wrong at a transport. Counting is lock-free and
// always on; logging happens only when debug logging is enabled and the budget allows.
internal sealed class AccessReporter
{
    private readonly ILogger _logger;
    private readonly string _transport;
    private readonly LogRateLimiter _limiter;
    private readonly long[] _counts = new long[(int)InvalidAccessKind.Rejected + 1];
    private long _deviceFaults;   // Interlocked.Increment only: the first increment (and only it) logs
    private readonly KeyValuePair<string, object?> _metricTag;   // the transport tag of every measurement (TransportMetrics)

    // A refused status or register write has no AccessRegion of its own: it is a common-config
    // (PCI) or register-window (MMIO) write the state machine refused.
    private static readonly KeyValuePair<string, object?> s_statusRegion = new("region", "device_status");
    private static readonly KeyValuePair<string, object?> s_registerRegion = new("region", "register");

    internal AccessReporter(ILogger logger, string transport, VirtioTransportOptions options)
    {
        _logger = logger;
        _transport = transport;
        _metricTag = TransportMetrics.TransportTag(transport);
        _limiter = new LogRateLimiter(options.TimeProvider, options.InvalidAccessLogLimitPerSecond, TimeSpan.FromSeconds(1));
    }

    internal ILogger Logger => _logger;

    internal string Transport => _transport;

    internal long Total
    {
        get
        {
            long total = 0;
            for (int i = 1; i < _counts.Length; i++)
            {
                total += Interlocked.Read(ref _counts[i]);
            }

            return total;
        }
    }

    internal long Count(InvalidAccessKind kind) =>
        (uint)kind < (uint)_counts.Length && kind != InvalidAccessKind.None ? Interlocked.Read(ref _counts[(int)kind]) : 0;

    internal void Invalid(InvalidAccessKind kind, AccessRegion region, ulong offset, int width, bool write)
    {
        Interlocked.Increment(ref _counts[(int)kind]);
        TransportMetrics.InvalidAccesses.Add(1, _metricTag, TransportMetrics.KindTag(kind), TransportMetrics.RegionTag(region));
        if (ShouldLog())
        {
            TransportLog.InvalidAccess(_logger, _transport, write ? "write" : "read", width, region, offset, kind);
        }
    }

    // The end of every transport's RestoreState: a refused snapshot never leaves the transport
    // half-restored; it is reset to its power-on state (`reset`) and the refusal is logged (not
    // rate-limited: only the host restores).
    internal SnapshotStatus Restored(SnapshotStatus status, Action reset)
    {
        if (status != SnapshotStatus.Ok)
        {
            reset();
            TransportLog.SnapshotRefused(_logger, _transport, status);
        }

        return status;
    }

    // A device exception the controller contained. Not guest-rate-limited like the rest: only the
    // first per transport is logged (at error level: it is a bug in the device, not the guest), so
    // a guest that can provoke it in a loop cannot flood the log.
    internal void DeviceFault(string operation, Exception exception)
    {
        TransportMetrics.DeviceFaults.Add(1, _metricTag, new KeyValuePair<string, object?>("operation", operation));
        if (Interlocked.Increment(ref _deviceFaults) == 1)
        {
            TransportLog.DeviceFault(_logger, exception, _transport, operation);
        }
    }

    internal void StatusWrite(byte value, DeviceStatusWriteResult result)
    {
        bool refused = result is not (DeviceStatusWriteResult.Accepted or DeviceStatusWriteResult.Reset or DeviceStatusWriteResult.Activated);
        if (refused)
        {
            Interlocked.Increment(ref _counts[(int)InvalidAccessKind.Rejected]);
            TransportMetrics.InvalidAccesses.Add(1, _metricTag, TransportMetrics.KindTag(InvalidAccessKind.Rejected), s_statusRegion);
        }

        // Lifecycle transitions are logged too (a guest can loop them, so they share the budget).
        if (ShouldLog())
        {
            TransportLog.StatusWrite(_logger, _transport, value, result);
        }
    }

    // Returns true when the write was accepted.
    internal bool RegisterWrite(string register, ulong value, RegisterWriteResult result)
    {
        if (result == RegisterWriteResult.Accepted)
        {
            return true;
        }

        Interlocked.Increment(ref _counts[(int)InvalidAccessKind.Rejected]);
        TransportMetrics.InvalidAccesses.Add(1, _metricTag, TransportMetrics.KindTag(InvalidAccessKind.Rejected), s_registerRegion);
        if (ShouldLog())
        {
            TransportLog.RegisterWriteRejected(_logger, _transport, register, value, result);
        }

        return false;
    }

    internal void QueueRejected(int queue, VirtqueueStatus status)
    {
        if (ShouldLog())
        {
            TransportLog.QueueRejected(_logger, _transport, queue, status);
        }
    }

    private bool ShouldLog()
    {
        if (!_logger.IsEnabled(LogLevel.Debug) || !_limiter.TryAcquire(out long suppressed))
        {
            return false;
        }

        if (suppressed > 0)
        {
            TransportLog.InvalidAccessesSuppressed(_logger, _transport, suppressed);
        }

        return true;
    }
}
