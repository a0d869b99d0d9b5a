using System.Buffers.Binary;
using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Queue;

namespace VirtioPanic.GuestDriver.Virtio;

/// <summary>
/// A virtio device found by the guest kernel, and the guest's virtio core for it (Linux's
/// <c>struct virtio_device</c> with virtio_pci_modern or virtio_mmio underneath): the
/// initialization sequence, feature negotiation, queue and interrupt setup, configuration access
/// that respects <c>config_generation</c>, and reset.
/// </summary>
/// <remarks>
/// <para>Initialization, step by step (virtio 1.2 §3.1.1): <see cref="Begin"/> (reset, wait for
/// status 0, ACKNOWLEDGE, DRIVER), <see cref="NegotiateFeatures"/> (FEATURES_OK with read-back),
/// <see cref="SetUpQueues"/> (interrupts, then queues), <see cref="SetDriverOk"/>; or all at once
/// with <see cref="Initialize"/>. A driver reads configuration and posts buffers in between, as
/// Linux drivers do in <c>probe</c>.</para>
/// <para>Guest code: call the members that access the device on the vCPU (inside
/// <see cref="GuestKernel.Run{T}"/>). Properties may be read from any thread.</para>
/// </remarks>
public sealed class GuestVirtioDevice
{
    private const int ResetPolls = 1000;
    private const int GenerationRetries = 64;
    private const ushort DefaultQueueSize = 256;

    private readonly GuestKernel _kernel;
    private readonly GuestTransport _transport;
    private GuestVirtqueue?[] _queues = [];
    private long _configChanges;
    private long _generationRetries;

    internal GuestVirtioDevice(GuestKernel kernel, GuestTransport transport)
    {
        _kernel = kernel;
        _transport = transport;
        Misbehave = new VirtioMisbehavior(this, transport);
    }

    /// <summary>Where the device is (<c>pci 0000:00:01.0 [1af4:1063]</c>, <c>virtio-mmio 0xd0000000 irq 5</c>).</summary>
    public string Location => _transport.Location;

    /// <summary>The transport.</summary>
    public VirtioTransportKind TransportKind => _transport.Kind;

    /// <summary>The virtio device ID.</summary>
    public uint DeviceId => _transport.DeviceId;

    /// <summary>The kernel that found the device.</summary>
    public GuestKernel Kernel => _kernel;

    /// <summary>Features the device offered at the last negotiation.</summary>
    public ulong OfferedFeatures { get; private set; }

    /// <summary>Features accepted at the last successful FEATURES_OK.</summary>
    public ulong NegotiatedFeatures { get; private set; }

    /// <summary>The interrupt mode obtained by the last <see cref="SetUpQueues"/>.</summary>
    public VirtioInterruptMode InterruptMode { get; private set; }

    /// <summary>The set-up queues by index (null where a queue was not set up).</summary>
    public IReadOnlyList<GuestVirtqueue?> Queues => _queues;

    /// <summary>Called (on the vCPU, from the interrupt) when the device signals a configuration change.</summary>
    public Action<GuestVirtioDevice>? ConfigChanged { get; set; }

    /// <summary>
    /// Set when a configuration-change interrupt finds DEVICE_NEEDS_RESET in the status (virtio 1.2
    /// §2.1.2): waits on this device's queues then stop at once instead of running into their
    /// timeouts. Cleared by <see cref="Reset"/>.
    /// </summary>
    public bool NeedsReset { get; private set; }

    /// <summary>Configuration-change interrupts received.</summary>
    public long ConfigChangeCount => Interlocked.Read(ref _configChanges);

    /// <summary>Configuration reads retried because <c>config_generation</c> moved during them.</summary>
    public long ConfigGenerationRetries => Interlocked.Read(ref _generationRetries);

    /// <summary>Deliberately wrong driver behaviour, for testing that the host survives it.</summary>
    public VirtioMisbehavior Misbehave { get; }

    internal GuestTransport Transport => _transport;

    /// <summary>The set-up queue <paramref name="index"/>.</summary>
    /// <param name="index">Queue index.</param>
    /// <exception cref="InvalidOperationException">The queue was not set up.</exception>
    public GuestVirtqueue Queue(int index) =>
        (uint)index < (uint)_queues.Length && _queues[index] is GuestVirtqueue queue ? queue : throw new InvalidOperationException($"Queue {index} is not set up.");

    /// <summary>Reads the device status register.</summary>
    public DeviceStatus ReadStatus() => (DeviceStatus)_transport.ReadStatus();

    /// <summary>Runs the whole initialization sequence: <see cref="Begin"/>, <see cref="NegotiateFeatures"/>, <see cref="SetUpQueues"/>, <see cref="SetDriverOk"/>.</summary>
    /// <param name="options">Features, queues and interrupt preference.</param>
    /// <returns>The first step that failed, or <see cref="VirtioInitResult.Ok"/>.</returns>
    public VirtioInitResult Initialize(VirtioDriverOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        VirtioInitResult result = Begin();
        if (result == VirtioInitResult.Ok)
        {
            result = NegotiateFeatures(options.Features);
        }

        if (result == VirtioInitResult.Ok)
        {
            result = SetUpQueues(options.Queues, options.Interrupts, options.MaxIndirect);
        }

        return result == VirtioInitResult.Ok ? SetDriverOk() : result;
    }

    /// <summary>Resets the device (waiting for status 0), then sets ACKNOWLEDGE and DRIVER.</summary>
    public VirtioInitResult Begin()
    {
        if (!Reset())
        {
            return VirtioInitResult.ResetTimedOut;
        }

        _transport.WriteStatus((byte)DeviceStatus.Acknowledge);
        _transport.WriteStatus((byte)(DeviceStatus.Acknowledge | DeviceStatus.Driver));
        return VirtioInitResult.Ok;
    }

    /// <summary>Reads the features the device offers (allowed in any state) and remembers them in <see cref="OfferedFeatures"/>.</summary>
    public ulong ReadDeviceFeatures()
    {
        OfferedFeatures = _transport.ReadDeviceFeatures();
        return OfferedFeatures;
    }

    /// <summary>
    /// Reads the offered features, accepts their intersection with <paramref name="supported"/>
    /// plus VIRTIO_F_VERSION_1, sets FEATURES_OK and reads it back (virtio 1.2 §3.1.1 steps 4–6).
    /// On failure sets FAILED.
    /// </summary>
    /// <param name="supported">Feature bits the driver supports.</param>
    public VirtioInitResult NegotiateFeatures(ulong supported)
    {
        ReadDeviceFeatures();
        if ((OfferedFeatures & VirtioFeatures.Version1) == 0)
        {
            Fail();
            return VirtioInitResult.NoVersion1;
        }

        ulong accepted = (OfferedFeatures & supported) | VirtioFeatures.Version1;
        return WriteFeaturesAndConfirm(accepted);
    }

    /// <summary>
    /// Sets up interrupts (MSI-X per queue, MSI-X shared, or the line, as Linux's
    /// <c>vp_find_vqs</c> falls back) and the given queues, with split or packed rings as negotiated.
    /// </summary>
    /// <param name="queues">Queues to set up.</param>
    /// <param name="interrupts">Interrupt preference.</param>
    /// <param name="maxIndirect">Entries per indirect table (0: none).</param>
    public VirtioInitResult SetUpQueues(IReadOnlyList<QueueSetup> queues, VirtioInterruptMode interrupts = VirtioInterruptMode.Auto, int maxIndirect = 0)
    {
        ArgumentNullException.ThrowIfNull(queues);
        GuestCpu cpu = _kernel.Cpu;
        int highest = queues.Count == 0 ? -1 : queues.Max(q => q.Index);
        var created = new GuestVirtqueue?[highest + 1];
        int[] positions = [.. queues.Select(q => q.Index)];
        VirtioInterruptMode preference = interrupts;
        while (true)
        {
            InterruptMode = _transport.SetUpInterrupts(cpu, queues.Count, preference, position => OnQueueInterrupt(positions[position]), OnAllQueuesInterrupt, OnConfigInterrupt);
            _queues = created;
            VirtioInitResult result = CreateQueues(queues, created, maxIndirect, out bool vectorRefused);
            if (!vectorRefused)
            {
                return result;
            }

            // The device could not map a queue's vector: fall back as vp_find_vqs does.
            preference = InterruptMode == VirtioInterruptMode.MsixPerQueue ? VirtioInterruptMode.MsixShared : VirtioInterruptMode.Line;
            Array.Clear(created);
            if (!Reset())
            {
                return VirtioInitResult.ResetTimedOut;
            }

            _transport.WriteStatus((byte)DeviceStatus.Acknowledge);
            _transport.WriteStatus((byte)(DeviceStatus.Acknowledge | DeviceStatus.Driver));
            VirtioInitResult renegotiated = WriteFeaturesAndConfirm(NegotiatedFeatures);
            if (renegotiated != VirtioInitResult.Ok)
            {
                return renegotiated;
            }
        }
    }

    /// <summary>Sets DRIVER_OK and checks it stuck without DEVICE_NEEDS_RESET.</summary>
    public VirtioInitResult SetDriverOk()
    {
        DeviceStatus status = ReadStatus();
        _transport.WriteStatus((byte)(status | DeviceStatus.DriverOk));
        DeviceStatus after = ReadStatus();
        return (after & DeviceStatus.DriverOk) != 0 && (after & DeviceStatus.DeviceNeedsReset) == 0 ? VirtioInitResult.Ok : VirtioInitResult.DeviceFailed;
    }

    /// <summary>Sets FAILED (the driver gives up on the device).</summary>
    public void Fail() => _transport.WriteStatus((byte)(ReadStatus() | DeviceStatus.Failed));

    /// <summary>
    /// Resets the device: writes 0 and waits until the status reads 0 (virtio 1.2 §4.1.4.3.2);
    /// every queue and interrupt the driver had is released.
    /// </summary>
    /// <returns>False when the status never read back 0.</returns>
    public bool Reset()
    {
        _transport.WriteStatus(0);
        bool zero = false;
        for (int i = 0; i < ResetPolls && !zero; i++)
        {
            zero = _transport.ReadStatus() == 0;
            if (!zero)
            {
                Thread.Yield();
            }
        }

        _transport.TearDownInterrupts(_kernel.Cpu);
        _queues = [];
        InterruptMode = VirtioInterruptMode.Auto;
        NeedsReset = false;
        return zero;
    }

    /// <summary>
    /// Reads device configuration atomically with respect to <c>config_generation</c> (Linux
    /// <c>virtio_cread</c>): the read is repeated until the generation is the same before and after.
    /// Fields are read with naturally aligned accesses of their width (at most 4 bytes).
    /// </summary>
    /// <param name="offset">Offset in the device configuration.</param>
    /// <param name="destination">Bytes to read.</param>
    /// <exception cref="InvalidOperationException">The generation never settled.</exception>
    public void ReadConfig(uint offset, Span<byte> destination)
    {
        for (int attempt = 0; attempt < GenerationRetries; attempt++)
        {
            uint before = _transport.ReadConfigGeneration();
            ReadConfigFields(offset, destination);
            if (_transport.ReadConfigGeneration() == before)
            {
                return;
            }

            Interlocked.Increment(ref _generationRetries);
        }

        throw new InvalidOperationException("The device's configuration generation kept changing.");
    }

    /// <summary>Reads a 32-bit little-endian configuration field (generation-safe).</summary>
    /// <param name="offset">Offset in the device configuration.</param>
    public uint ReadConfigUInt32(uint offset)
    {
        Span<byte> data = stackalloc byte[4];
        ReadConfig(offset, data);
        return BinaryPrimitives.ReadUInt32LittleEndian(data);
    }

    /// <summary>Writes a configuration field with one access of its width (1, 2, 4 or 8 bytes).</summary>
    /// <param name="offset">Offset in the device configuration.</param>
    /// <param name="data">The field's bytes.</param>
    public void WriteConfig(uint offset, ReadOnlySpan<byte> data) => _transport.WriteConfigRaw(offset, data);

    /// <summary>Writes a 32-bit little-endian configuration field with one 32-bit access.</summary>
    /// <param name="offset">Offset in the device configuration.</param>
    /// <param name="value">The value.</param>
    public void WriteConfigUInt32(uint offset, uint value)
    {
        Span<byte> data = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(data, value);
        _transport.WriteConfigRaw(offset, data);
    }

    private VirtioInitResult WriteFeaturesAndConfirm(ulong accepted)
    {
        _transport.WriteDriverFeatures(accepted);
        DeviceStatus status = ReadStatus();
        _transport.WriteStatus((byte)(status | DeviceStatus.FeaturesOk));
        if ((ReadStatus() & DeviceStatus.FeaturesOk) == 0)
        {
            Fail();
            return VirtioInitResult.FeaturesRejected;
        }

        NegotiatedFeatures = accepted;
        return VirtioInitResult.Ok;
    }

    private VirtioInitResult CreateQueues(IReadOnlyList<QueueSetup> queues, GuestVirtqueue?[] created, int maxIndirect, out bool vectorRefused)
    {
        vectorRefused = false;
        bool packed = (NegotiatedFeatures & VirtioFeatures.RingPacked) != 0;
        bool eventIndex = (NegotiatedFeatures & VirtioFeatures.EventIndex) != 0;
        int indirect = (NegotiatedFeatures & VirtioFeatures.IndirectDescriptors) != 0 ? maxIndirect : 0;
        for (int position = 0; position < queues.Count; position++)
        {
            QueueSetup setup = queues[position];
            ushort max = _transport.ReadQueueMaxSize(setup.Index);
            if (max == 0 || _transport.IsQueueEnabled(setup.Index))
            {
                return VirtioInitResult.QueueUnavailable;
            }

            ushort size = setup.Size == 0 ? Math.Min(max, DefaultQueueSize) : Math.Min(setup.Size, max);
            if (!packed)
            {
                size = (ushort)(1 << (31 - int.LeadingZeroCount(size)));   // split rings: a power of two
            }

            IVirtqueueDriver ring = packed
                ? PackedRingDriver.Allocate(_kernel.Allocator, size, eventIndex, indirect)
                : SplitRingDriver.Allocate(_kernel.Allocator, size, eventIndex, indirect);
            if (!_transport.ActivateQueue(setup.Index, ring.Config, _transport.QueueVector(position)))
            {
                vectorRefused = true;
                return VirtioInitResult.QueueRejected;
            }

            if (!_transport.IsQueueEnabled(setup.Index) || (ReadStatus() & DeviceStatus.DeviceNeedsReset) != 0)
            {
                return VirtioInitResult.QueueRejected;
            }

            created[setup.Index] = new GuestVirtqueue(this, _transport, _kernel.Cpu, setup.Index, ring, packed ? VirtqueueFormat.Packed : VirtqueueFormat.Split);
        }

        return VirtioInitResult.Ok;
    }

    private void ReadConfigFields(uint offset, Span<byte> destination)
    {
        int done = 0;
        while (done < destination.Length)
        {
            uint at = offset + (uint)done;
            int remaining = destination.Length - done;
            int width = (at & 3) == 0 && remaining >= 4 ? 4 : (at & 1) == 0 && remaining >= 2 ? 2 : 1;
            _transport.ReadConfigRaw(at, destination.Slice(done, width));
            done += width;
        }
    }

    private bool OnQueueInterrupt(int index)
    {
        GuestVirtqueue?[] queues = _queues;
        return (uint)index < (uint)queues.Length && queues[index] is GuestVirtqueue queue && queue.OnInterrupt(shared: false);
    }

    private bool OnAllQueuesInterrupt()
    {
        bool handled = false;
        foreach (GuestVirtqueue? queue in _queues)
        {
            handled |= queue?.OnInterrupt(shared: true) ?? false;
        }

        return handled;
    }

    private bool OnConfigInterrupt()
    {
        Interlocked.Increment(ref _configChanges);
        if ((ReadStatus() & DeviceStatus.DeviceNeedsReset) != 0)
        {
            NeedsReset = true;
        }

        ConfigChanged?.Invoke(this);
        return true;
    }
}
