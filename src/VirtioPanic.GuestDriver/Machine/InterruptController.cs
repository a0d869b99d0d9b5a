using System.Diagnostics;
using VirtioPanic.Virtio.Device;

namespace VirtioPanic.GuestDriver.Machine;

/// <summary>
/// The test machine's interrupt controller: an x86-style local APIC with an I/O APIC in front of
/// its interrupt lines. Devices deliver message-signalled interrupts and line levels; the guest
/// acknowledges vectors and ends them; every delivery is counted and the most recent ones are kept.
/// </summary>
/// <remarks>
/// <para>Thread-safe. Deliveries come from device workers, vCPUs and timers; the guest's wakeup
/// callback is invoked after the controller's lock is released.</para>
/// <para>Messages must target 0xFEE00000–0xFEEFFFFF with a vector of 32–255 in the data's low
/// byte; anything else is counted in <see cref="InvalidMessageCount"/> and dropped.</para>
/// </remarks>
public sealed class InterruptController : IGuestInterruptController
{
    /// <summary>Base of the x86 MSI address window.</summary>
    public const ulong MsiAddressBase = 0xFEE0_0000;

    /// <summary>The lowest vector a device may raise (0–31 are CPU exceptions).</summary>
    public const int FirstVector = 32;

    /// <summary>The highest vector.</summary>
    public const int LastVector = 255;

    /// <summary>Number of interrupt lines (I/O APIC pins).</summary>
    public const int LineCount = 24;

    private const int LogCapacity = 256;

    private readonly Lock _lock = new();
    private readonly TimeProvider _clock;
    private readonly bool[] _pending = new bool[LastVector + 1];
    private readonly bool[] _inService = new bool[LastVector + 1];
    private readonly long[] _vectorCounts = new long[LastVector + 1];
    private readonly int[] _lineVector = new int[LineCount];
    private readonly bool[] _lineLevel = new bool[LineCount];
    private readonly long[] _lineAssertions = new long[LineCount];
    private readonly InterruptDelivery[] _log = new InterruptDelivery[LogCapacity];
    private long _logCount;
    private long _messages;
    private long _invalidMessages;
    private Action? _wakeup;

    /// <summary>Creates a controller with every line unrouted.</summary>
    /// <param name="clock">Stamps the recorded deliveries.</param>
    public InterruptController(TimeProvider clock)
    {
        ArgumentNullException.ThrowIfNull(clock);
        _clock = clock;
        Array.Fill(_lineVector, -1);
    }

    /// <summary>Message-signalled interrupts delivered to a valid vector.</summary>
    public long MessageCount => Interlocked.Read(ref _messages);

    /// <summary>Messages dropped because their address or vector was invalid.</summary>
    public long InvalidMessageCount => Interlocked.Read(ref _invalidMessages);

    /// <summary>How many times <paramref name="vector"/> was raised (messages, and line assertions routed to it).</summary>
    /// <param name="vector">The vector.</param>
    public long GetVectorCount(int vector)
    {
        CheckVector(vector);
        lock (_lock)
        {
            return _vectorCounts[vector];
        }
    }

    /// <summary>How many times <paramref name="line"/> went from deasserted to asserted.</summary>
    /// <param name="line">The line.</param>
    public long GetLineAssertionCount(int line)
    {
        CheckLine(line);
        lock (_lock)
        {
            return _lineAssertions[line];
        }
    }

    /// <summary>Whether <paramref name="line"/> is asserted now.</summary>
    /// <param name="line">The line.</param>
    public bool IsLineAsserted(int line)
    {
        CheckLine(line);
        lock (_lock)
        {
            return _lineLevel[line];
        }
    }

    /// <summary>The most recent deliveries (at most 256), oldest first.</summary>
    public InterruptDelivery[] GetRecentDeliveries()
    {
        lock (_lock)
        {
            int count = (int)Math.Min(_logCount, LogCapacity);
            var result = new InterruptDelivery[count];
            for (int i = 0; i < count; i++)
            {
                result[i] = _log[(_logCount - count + i) % LogCapacity];
            }

            return result;
        }
    }

    /// <summary>
    /// The <see cref="IInterruptSink"/> to give one device's transport: its messages are delivered
    /// here as they are, and its legacy interrupt (INTx pin or virtio-mmio line) drives <paramref name="line"/>.
    /// </summary>
    /// <param name="line">The interrupt line the device's pin is wired to.</param>
    public IInterruptSink ConnectDevice(int line)
    {
        CheckLine(line);
        return new MachineInterruptSink(this, line);
    }

    /// <summary>A device wrote <paramref name="data"/> to <paramref name="address"/> (an MSI or MSI-X message).</summary>
    /// <param name="address">Message address.</param>
    /// <param name="data">Message data.</param>
    public void DeliverMessage(ulong address, uint data)
    {
        int vector = (int)(data & 0xFF);
        bool valid = address - MsiAddressBase < 0x10_0000 && vector >= FirstVector && (data & 0xFFFF_FF00) == 0;
        Action? wakeup = null;
        lock (_lock)
        {
            Record(new InterruptDelivery(-1, valid ? vector : -1, new MsiMessage(address, data), _clock.GetUtcNow()));
            if (!valid)
            {
                _invalidMessages++;
            }
            else
            {
                _messages++;
                _vectorCounts[vector]++;
                _pending[vector] = true;
                wakeup = _wakeup;
            }
        }

        wakeup?.Invoke();
    }

    /// <summary>A device set the level of <paramref name="line"/>.</summary>
    /// <param name="line">The line, 0 to <see cref="LineCount"/> - 1.</param>
    /// <param name="asserted">True when asserted.</param>
    public void SetLineLevel(int line, bool asserted)
    {
        CheckLine(line);
        Action? wakeup = null;
        lock (_lock)
        {
            if (_lineLevel[line] == asserted)
            {
                return;
            }

            _lineLevel[line] = asserted;
            int vector = _lineVector[line];
            if (asserted)
            {
                _lineAssertions[line]++;
                Record(new InterruptDelivery(line, vector, default, _clock.GetUtcNow()));
                if (vector >= 0)
                {
                    _vectorCounts[vector]++;
                    if (!_inService[vector])
                    {
                        _pending[vector] = true;
                        wakeup = _wakeup;
                    }
                }
            }
            else if (vector >= 0 && !AnyAssertedLineUnsynchronized(vector))
            {
                // Level semantics: a line that drops before the CPU takes it raises nothing.
                _pending[vector] = false;
            }
        }

        wakeup?.Invoke();
    }

    /// <inheritdoc />
    public MsiMessage ComposeMsi(int vector)
    {
        CheckVector(vector);
        return new MsiMessage(MsiAddressBase, (uint)vector);
    }

    /// <inheritdoc />
    public void RouteLine(int line, int vector)
    {
        CheckLine(line);
        if (vector != -1)
        {
            CheckVector(vector);
        }

        Action? wakeup = null;
        lock (_lock)
        {
            _lineVector[line] = vector;
            if (vector >= 0 && _lineLevel[line] && !_inService[vector])
            {
                _pending[vector] = true;
                wakeup = _wakeup;
            }
        }

        wakeup?.Invoke();
    }

    /// <inheritdoc />
    public bool TryAcknowledge(out int vector)
    {
        lock (_lock)
        {
            for (int v = LastVector; v >= FirstVector; v--)
            {
                if (_pending[v] && !_inService[v])
                {
                    _pending[v] = false;
                    _inService[v] = true;
                    vector = v;
                    return true;
                }
            }
        }

        vector = -1;
        return false;
    }

    /// <inheritdoc />
    public void EndOfInterrupt(int vector)
    {
        CheckVector(vector);
        Action? wakeup = null;
        lock (_lock)
        {
            _inService[vector] = false;
            if (AnyAssertedLineUnsynchronized(vector))
            {
                _pending[vector] = true;
            }

            if (_pending[vector])
            {
                wakeup = _wakeup;
            }
        }

        wakeup?.Invoke();
    }

    /// <inheritdoc />
    public void SetWakeup(Action? wakeup)
    {
        lock (_lock)
        {
            _wakeup = wakeup;
        }
    }

    private static void CheckVector(int vector)
    {
        if (vector is < FirstVector or > LastVector)
        {
            throw new ArgumentOutOfRangeException(nameof(vector), vector, "Vectors are 32 to 255.");
        }
    }

    private static void CheckLine(int line)
    {
        if ((uint)line >= LineCount)
        {
            throw new ArgumentOutOfRangeException(nameof(line), line, "Lines are 0 to 23.");
        }
    }

    private bool AnyAssertedLineUnsynchronized(int vector)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread, "caller holds the lock");
        for (int line = 0; line < LineCount; line++)
        {
            if (_lineVector[line] == vector && _lineLevel[line])
            {
                return true;
            }
        }

        return false;
    }

    private void Record(InterruptDelivery delivery)
    {
        _log[_logCount % LogCapacity] = delivery;
        _logCount++;
    }
}
