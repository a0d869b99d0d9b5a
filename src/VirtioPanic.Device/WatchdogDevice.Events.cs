using System.Text;
using VirtioPanic.Device.Events;
using VirtioPanic.Device.Protocol;
using VirtioPanic.Device.Timer;

namespace VirtioPanic.Device;

// Turning what the guest and the timer did into typed host events.
public sealed partial class WatchdogDevice
{
    // Set by the host on any thread (SetReportAcceptedObserver, SetInlineReportObserver), read where
    // reports are made; Volatile on both sides, so a reader sees a fully constructed delegate or null.
    private Action<GuestReportEvent>? _acceptedObserver;
    private Func<GuestReportEvent, Action?>? _inlineObserver;

    // The handler of a panic_events report the inline observer took, waiting for the post-access
    // step of the write that made it, and that write's thread. Set only inside WriteConfig (the
    // transport serializes configuration accesses), and only while empty: _takenBy first, then
    // _taken with release; AfterConfigWrite reads _taken with acquire before _takenBy, and only the
    // owning thread clears it (Interlocked.Exchange). While one is waiting, further reports are
    // published to Events, so a taken report is never overwritten or lost.
    private Action? _taken;
    private int _takenBy;

    /// <summary>
    /// Sets a callback the device invokes synchronously for every guest report (panic, crash-loaded,
    /// shutdown) it accepts, before the report is queued on <see cref="Events"/> and before the guest
    /// learns it was accepted: before its <c>panic_events</c> write returns, or before the device
    /// completes the guest's <c>eventq</c> buffer. A host uses it to make the report durable (journal
    /// on acceptance), so nothing the guest saw accepted is lost with the host process. Null removes it.
    /// </summary>
    /// <param name="observer">Called with the report on the thread that made it (a vCPU thread, inside
    /// the transport's register lock for a <c>panic_events</c> write; the device's <c>eventq</c> worker;
    /// or the thread resetting the device, with the device's own lock held, when a reset drains
    /// committed records); the guest waits for it. It must not throw and must not call back into the
    /// device.</param>
    public void SetReportAcceptedObserver(Action<GuestReportEvent>? observer) => Volatile.Write(ref _acceptedObserver, observer);

    /// <summary>
    /// Sets the inline observer of the minimal panic path (a write to <c>panic_events</c>, spec
    /// §6.6): for each such report it decides, before the report is published, whether it takes the
    /// report itself or declines it. A taken report never reaches <see cref="Events"/>: the device
    /// runs the handler the observer returned in the transport's post-access step
    /// (<see cref="AfterConfigWrite()"/>), on the guest's thread, after the transport's register lock
    /// is released and before the guest's write completes. A declined report goes to
    /// <see cref="Events"/> as usual. Null removes the observer.
    /// </summary>
    /// <param name="observer">Called with the report inside the guest's write, under the transport's
    /// register lock and the device's event lock, only when nothing the host has not yet read from
    /// <see cref="Events"/> is ahead of the report (a taken report cannot overtake one). It returns
    /// null to decline, or the handler to run. It must not block, throw or call back into the device;
    /// the handler may reset the device or the transport on that thread, but must not wait for another
    /// thread that needs either, nor for this vCPU to stop.</param>
    /// <remarks>Only this path is observed. Reports made on the device's queue workers (eventq
    /// records) or at a reset, and the timer's events, reach <see cref="Events"/> only: a queue worker
    /// owns its queue until it returns, so a device reset from there would wait for itself, and the
    /// timer thread is shared by every device.</remarks>
    public void SetInlineReportObserver(Func<GuestReportEvent, Action?>? observer) => Volatile.Write(ref _inlineObserver, observer);

    /// <summary>
    /// The post-access step of a configuration write (see <see cref="Virtio.Device.IVirtioDevice.AfterConfigWrite()"/>):
    /// runs the inline observer's handler for a <c>panic_events</c> report this thread's write made
    /// and the observer took. Every transport calls it after <see cref="WriteConfig"/>.
    /// </summary>
    public void AfterConfigWrite()
    {
        // Only the writing thread runs its own taken report: another vCPU's post-access step leaves it.
        if (Volatile.Read(ref _taken) is null || Volatile.Read(ref _takenBy) != Environment.CurrentManagedThreadId)
        {
            return;
        }

        Interlocked.Exchange(ref _taken, null)?.Invoke();
    }

    // The minimal path (spec §6.6): one write, one event, made before the write returns (WDT-DEV-21).
    internal void ReportPanicEvents(uint value)
    {
        WatchdogEventKind kind;
        if ((value & WatchdogConfig.PanicEventPanicked) != 0)
        {
            kind = WatchdogEventKind.GuestPanicked;
        }
        else if ((value & WatchdogConfig.PanicEventCrashLoaded) != 0)
        {
            kind = WatchdogEventKind.GuestCrashLoaded;
        }
        else if ((value & WatchdogConfig.PanicEventShutdown) != 0)
        {
            kind = WatchdogEventKind.GuestShutdown;
        }
        else
        {
            ReportProtocolError(-1, WatchdogProtocolError.UnknownPanicEvents, "panic_events write with no supported bit");
            return;
        }

        if ((value & ~WatchdogConfig.SupportedPanicEvents) != 0)
        {
            // Unknown bits are ignored (pvpanic rule); count them.
            ReportProtocolError(-1, WatchdogProtocolError.UnknownPanicEvents, "panic_events write with unsupported bits");
        }

        PublishReport(kind, WatchdogEventSource.ConfigField, header: null, codes: [], message: null, logTail: null);
    }

    // A validated record (spec §6.5). Returns the host event's sequence number for the status.
    internal long ReportRecord(in RecordHeader header, ReadOnlySpan<byte> copy, WatchdogEventSource source)
    {
        ulong[] codes = header.CodeCount == 0 ? [] : new ulong[header.CodeCount];
        for (int i = 0; i < codes.Length; i++)
        {
            codes[i] = RecordParser.Code(copy, i);
        }

        // Invalid UTF-8 becomes U+FFFD (Encoding.UTF8 replaces by default): the guest's text is untrusted.
        int messageStart = WatchdogProtocol.RecordHeaderSize;
        string? message = header.MessageLength == 0 ? null : Encoding.UTF8.GetString(copy.Slice(messageStart, header.MessageLength));
        string? logTail = header.LogTailLength == 0 ? null : Encoding.UTF8.GetString(copy.Slice(messageStart + header.MessageLength, (int)header.LogTailLength));
        WatchdogEventKind kind = header.Type switch
        {
            WatchdogProtocol.RecordTypePanic => WatchdogEventKind.GuestPanicked,
            WatchdogProtocol.RecordTypeCrashLoaded => WatchdogEventKind.GuestCrashLoaded,
            _ => WatchdogEventKind.GuestShutdown,
        };

        return PublishReport(kind, source, header, codes, message, logTail);
    }

    // A queue worker's pass threw (a device bug or a transport callback that threw; never guest
    // data, which comes back as statuses). The worker has stopped that queue; the driver is told
    // with DEVICE_NEEDS_RESET (spec §6.9, as for a ring error) and the host log gets the first
    // such fault of this device only: a guest that can provoke it repeatedly cannot flood the log.
    internal void ReportWorkerFault(int queueIndex, Exception exception)
    {
        SignalNeedsReset();
        LogFault(queueIndex, exception);
    }

    internal void ReportTimerFault(Exception exception) => LogFault(-1, exception);

    internal void ReportProtocolError(int queueIndex, WatchdogProtocolError error, string detail, ushort? declaredType = null)
    {
        Interlocked.Increment(ref _protocolErrors);
        WatchdogDeviceMetrics.ProtocolErrors.Add(1, _metricTag, WatchdogDeviceMetrics.KindTag(error));
        if (_warnings.TryAcquire(out long suppressed))
        {
            WatchdogDeviceLog.ProtocolError(_logger, Id, queueIndex, error, detail, suppressed);
        }

        Publish(new GuestProtocolErrorEvent
        {
            DeviceId = Id,
            Sequence = _sink.NextSequence(),
            VmRunTime = _timer.RunTime,
            HostTime = _time.GetUtcNow(),
            Error = error,
            QueueIndex = queueIndex,
            Detail = detail,
            DeclaredRecordType = declaredType,
        });
    }

    private void LogFault(int queueIndex, Exception exception)
    {
        long faults = Interlocked.Increment(ref _faults);
        WatchdogDeviceMetrics.Faults.Add(1, _metricTag, new KeyValuePair<string, object?>("where", queueIndex < 0 ? "timer" : "worker"));
        if (faults == 1)
        {
            string where = queueIndex < 0
                ? "its timer (retried in a second while armed)"
                : $"the worker of queue {queueIndex} (the queue is stopped, DEVICE_NEEDS_RESET set)";
            WatchdogDeviceLog.InternalFault(_logger, exception, Id, where);
        }
    }

    private void SignalNeedsReset()
    {
        if (Interlocked.Exchange(ref _needsReset, 1) == 0)
        {
            // Workers run only while a context is set; Reset clears it only after stopping them.
            Volatile.Read(ref _context)?.SetNeedsReset();
        }
    }

    private long PublishReport(WatchdogEventKind kind, WatchdogEventSource source, RecordHeader? header, ulong[] codes, string? message, string? logTail)
    {
        long sequence = _sink.NextSequence();
        TimeSpan runTime = _timer.RunTime;
        DateTimeOffset now = _time.GetUtcNow();
        uint? vcpu = header is { VcpuId: not WatchdogProtocol.UnknownVcpu } h ? h.VcpuId : null;
        TimeSpan? guestTime = header is { GuestTimeNs: not 0 } g ? TimeSpan.FromTicks((long)(g.GuestTimeNs / 100)) : null;
        uint? recordSequence = header?.Sequence;
        var format = (PanicCodeFormat)(header?.CodeFormat ?? 0);
        GuestReportEvent report = kind switch
        {
            WatchdogEventKind.GuestPanicked => new GuestPanickedEvent
            {
                DeviceId = Id, Sequence = sequence, VmRunTime = runTime, HostTime = now, VcpuId = vcpu, GuestTime = guestTime,
                Source = source, RecordSequence = recordSequence, CodeFormat = format, Codes = codes, Message = message, LogTail = logTail,
            },
            WatchdogEventKind.GuestCrashLoaded => new GuestCrashLoadedEvent
            {
                DeviceId = Id, Sequence = sequence, VmRunTime = runTime, HostTime = now, VcpuId = vcpu, GuestTime = guestTime,
                Source = source, RecordSequence = recordSequence, CodeFormat = format, Codes = codes, Message = message, LogTail = logTail,
            },
            _ => new GuestShutdownEvent
            {
                DeviceId = Id, Sequence = sequence, VmRunTime = runTime, HostTime = now, VcpuId = vcpu, GuestTime = guestTime,
                Source = source, RecordSequence = recordSequence, CodeFormat = format, Codes = codes, Message = message, LogTail = logTail,
            },
        };

        if (_reportLogs.TryAcquire(out _))
        {
            // Guest-triggerable: a guest can report in a loop, so the log is rate-limited (the events are not).
            WatchdogDeviceLog.GuestReport(_logger, Id, kind, source, vcpu, message);
        }

        if (kind is WatchdogEventKind.GuestPanicked or WatchdogEventKind.GuestCrashLoaded)
        {
            // WDT-DEV-47: the guest's panic path owns the VM now; no vCPU of it is reported stalled.
            _vcpus?.UntrackAll();
        }

        Volatile.Read(ref _acceptedObserver)?.Invoke(report);

        // One consumer per report, decided before it is published: the inline observer takes a
        // panic_events report (handled in this write's post-access step) or it goes to Events.
        if (source == WatchdogEventSource.ConfigField && Volatile.Read(ref _inlineObserver) is { } inline && Volatile.Read(ref _taken) is null
            && _sink.TryTakeInline(report, inline, out Action? handler))
        {
            Volatile.Write(ref _takenBy, Environment.CurrentManagedThreadId);
            Volatile.Write(ref _taken, handler);
        }
        else
        {
            Publish(report);
        }

        return sequence;
    }

    private void Publish(WatchdogEvent evt)
    {
        switch (_sink.Publish(evt))
        {
            case WatchdogEventSink.Admission.Coalesced:
                WatchdogDeviceMetrics.EventsCoalesced.Add(1, _metricTag, WatchdogDeviceMetrics.KindTag(evt.Kind));
                WatchdogDeviceLog.EventCoalesced(_logger, Id, evt.Kind, _sink.Coalesced);
                break;
            case WatchdogEventSink.Admission.Dropped:
                WatchdogDeviceMetrics.EventsDropped.Add(1, _metricTag, WatchdogDeviceMetrics.KindTag(evt.Kind));
                WatchdogDeviceLog.EventDropped(_logger, Id, evt.Kind, _sink.Dropped);
                break;
            default:
                break;
        }
    }

    private void OnTransition(in WatchdogTransition transition)
    {
        long sequence = _sink.NextSequence();
        DateTimeOffset now = _time.GetUtcNow();

        // Expiries are always logged; the other transitions can be driven in a loop by the guest.
        bool log = transition.Kind == WatchdogTransitionKind.Expired || _stateLogs.TryAcquire(out _);
        WatchdogEvent evt;
        switch (transition.Kind)
        {
            case WatchdogTransitionKind.Armed:
                if (log)
                {
                    WatchdogDeviceLog.Armed(_logger, Id, transition.Timeout);
                }

                evt = new WatchdogArmedEvent { DeviceId = Id, Sequence = sequence, VmRunTime = transition.VmRunTime, HostTime = now, Timeout = transition.Timeout, ByHeartbeat = transition.ByHeartbeat };
                break;
            case WatchdogTransitionKind.Stopped:
                if (log)
                {
                    WatchdogDeviceLog.Stopped(_logger, Id, transition.StopReason);
                }

                evt = new WatchdogStoppedEvent { DeviceId = Id, Sequence = sequence, VmRunTime = transition.VmRunTime, HostTime = now, Reason = transition.StopReason };
                break;
            case WatchdogTransitionKind.Pretimeout:
                if (log)
                {
                    WatchdogDeviceLog.Pretimeout(_logger, Id, transition.TimeLeft);
                }

                evt = new WatchdogPretimeoutEvent
                {
                    DeviceId = Id, Sequence = sequence, VmRunTime = transition.VmRunTime, HostTime = now,
                    TimeLeft = transition.TimeLeft, Timeout = transition.Timeout, Pretimeout = transition.Pretimeout,
                };
                break;
            default:
                if (log)
                {
                    WatchdogDeviceLog.Expired(_logger, Id, transition.Timeout);
                }

                evt = new WatchdogExpiredEvent { DeviceId = Id, Sequence = sequence, VmRunTime = transition.VmRunTime, HostTime = now, Timeout = transition.Timeout };
                break;
        }

        Publish(evt);
    }

    private void OnVcpuTransition(in VcpuStallTransition transition)
    {
        VcpuStallMonitor vcpus = _vcpus!;
        long sequence = _sink.NextSequence();
        DateTimeOffset now = _time.GetUtcNow();
        uint vcpu = (uint)transition.Vcpu;
        WatchdogEvent evt;
        switch (transition.Kind)
        {
            case VcpuStallTransitionKind.Stalled:
                // Rate-limited: with 1024 vCPUs a guest could make a thousand of these a second.
                if (_stallLogs.TryAcquire(out _))
                {
                    WatchdogDeviceLog.VcpuStalled(_logger, Id, transition.Vcpu, transition.StalledFor);
                }

                evt = new VcpuStalledEvent
                {
                    DeviceId = Id, Sequence = sequence, VmRunTime = transition.VmRunTime, HostTime = now, VcpuId = vcpu,
                    Vcpu = transition.Vcpu, StalledFor = transition.StalledFor, Timeout = vcpus.Timeout, SecondStage = vcpus.SecondStage,
                };
                break;
            case VcpuStallTransitionKind.Recovered:
                if (_stateLogs.TryAcquire(out _))
                {
                    WatchdogDeviceLog.VcpuRecovered(_logger, Id, transition.Vcpu, transition.SinceStall);
                }

                evt = new VcpuRecoveredEvent
                {
                    DeviceId = Id, Sequence = sequence, VmRunTime = transition.VmRunTime, HostTime = now, VcpuId = vcpu,
                    Vcpu = transition.Vcpu, SinceStall = transition.SinceStall,
                };
                break;
            default:
                if (_stallLogs.TryAcquire(out _))
                {
                    WatchdogDeviceLog.VcpuStallExpired(_logger, Id, transition.Vcpu, transition.SinceStall);
                }

                evt = new VcpuStallExpiredEvent
                {
                    DeviceId = Id, Sequence = sequence, VmRunTime = transition.VmRunTime, HostTime = now, VcpuId = vcpu,
                    Vcpu = transition.Vcpu, SinceStall = transition.SinceStall, StalledFor = transition.StalledFor,
                };
                break;
        }

        Publish(evt);
    }

    // The timer's and the vCPU stall monitor's listener: both kick the notice worker the same way.
    private sealed class TimerListener : IWatchdogTimerListener, IVcpuStallListener
    {
        private readonly WatchdogDevice _device;

        internal TimerListener(WatchdogDevice device) => _device = device;

        public void OnTransition(in WatchdogTransition transition) => _device.OnTransition(transition);

        public void OnTransition(in VcpuStallTransition transition) => _device.OnVcpuTransition(transition);

        // The device's own path to the notice worker, not the guest's Notify entry point.
        public void OnNoticePending() => _device.Kick(_device._noticeWorker);

        public void OnTimerFault(Exception exception) => _device.ReportTimerFault(exception);
    }
}
