using System.Buffers.Binary;
using Microsoft.Extensions.Logging;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.GuestDriver.Machine;

// Design: the reference IGuestMachine. A PC-like machine reduced to what virtio needs:
//
//   RAM               RamBase .. +RamSize (one guarded anonymous region)
//   PCI ECAM          EcamBase .. +1 MiB (bus 0: device << 15 | function << 12 | register)
//   ports 0xCF8/0xCFC configuration mechanism #1
//   PCI memory window PciMemoryBase .. +PciMemorySize (firmware, i.e. guest code, places BARs here)
//   virtio-mmio       VirtioMmioBase + 4 KiB * n, line VirtioMmioFirstLine + n
//   00:00.0           a host bridge function (not virtio; enumeration must skip it)
//   00:0d.0, d >= 1   the virtio-pci functions, INTx through the swizzle from PciIntxLineBase
//
// MMIO dispatch follows what the functions report: each BarChanged event unmaps the previous
// range and maps the current one. The region table is copy-on-write: lookups (every guest access)
// read one volatile array reference; changes take _lock.

/// <summary>
/// A test machine for virtio devices: guest RAM, a PCI host bridge (ECAM and ports 0xCF8/0xCFC)
/// with virtio-pci functions, virtio-mmio devices at fixed addresses, an interrupt controller that
/// records every delivery, and a clock.
/// </summary>
/// <remarks>
/// Thread-safe: guest vCPU threads access it while host threads drive the devices. Add devices
/// before booting the guest.
/// </remarks>
public sealed class TestMachine : IGuestMachine, IMmioBus, IPortIoBus, IDisposable
{
    /// <summary>The configuration address port of mechanism #1.</summary>
    public const ushort ConfigAddressPort = 0xCF8;

    /// <summary>The first configuration data port of mechanism #1 (0xCFC to 0xCFF).</summary>
    public const ushort ConfigDataPort = 0xCFC;

    private const ulong EcamSize = 1UL << 20;
    private const ulong MmioStride = 0x1000;
    private const int MaxDevices = 32;

    private readonly Lock _lock = new();
    private readonly TestMachineOptions _options;
    private readonly VirtioPciFunction?[] _pci = new VirtioPciFunction?[MaxDevices];
    private readonly List<VirtioMmioTransport> _mmio = [];
    private readonly List<VirtioMmioSlot> _mmioSlots = [];
    private readonly byte[] _hostBridge = BuildHostBridge();
    private volatile MmioRegion[] _regions = [];
    private uint _configAddress;
    private long _unclaimedMmio;
    private long _unclaimedPorts;

    /// <summary>Creates a machine with RAM and an empty PCI bus.</summary>
    /// <param name="options">Layout and clock; defaults when null.</param>
    public TestMachine(TestMachineOptions? options = null)
    {
        _options = options ?? new TestMachineOptions();
        if (_options.RamSize < (2UL << 20))
        {
            throw new ArgumentException("The machine needs at least 2 MiB of RAM.", nameof(options));
        }

        Memory = GuestMemory.CreateAnonymous(_options.RamSize, _options.RamBase);
        Clock = _options.Clock;
        Interrupts = new InterruptController(Clock);
        if (_options.EcamBase is ulong ecam)
        {
            AddRegionUnsynchronized(new MmioRegion(ecam, EcamSize, this, -1, (data, offset) => ReadEcam(offset, data), (data, offset) => WriteEcam(offset, data)));
        }
    }

    /// <inheritdoc />
    public GuestMemory Memory { get; }

    /// <inheritdoc />
    public TimeProvider Clock { get; }

    /// <summary>The interrupt controller, with its record of deliveries.</summary>
    public InterruptController Interrupts { get; }

    IGuestInterruptController IGuestMachine.Interrupts => Interrupts;

    IMmioBus IGuestMachine.Mmio => this;

    IPortIoBus? IGuestMachine.PortIo => _options.ConfigPorts ? this : null;

    /// <inheritdoc />
    public MachineLayout Layout
    {
        get
        {
            lock (_lock)
            {
                return new MachineLayout
                {
                    GuestRamBase = _options.RamBase + (1UL << 20),
                    GuestRamSize = _options.RamSize - (1UL << 20),
                    Pci = new PciHostBridgeLayout
                    {
                        EcamBase = _options.EcamBase,
                        HasConfigPorts = _options.ConfigPorts,
                        MemoryWindowBase = _options.PciMemoryBase,
                        MemoryWindowSize = _options.PciMemorySize,
                        IntxLineBase = _options.PciIntxLineBase,
                    },
                    MmioDevices = [.. _mmioSlots],
                };
            }
        }
    }

    /// <summary>Guest MMIO accesses no device claimed.</summary>
    public long UnclaimedMmioAccessCount => Interlocked.Read(ref _unclaimedMmio);

    /// <summary>Guest port accesses nothing answered.</summary>
    public long UnclaimedPortAccessCount => Interlocked.Read(ref _unclaimedPorts);

    /// <summary>The virtio-pci functions, indexed by device number (slot 0 is the host bridge, so it is null).</summary>
    public IReadOnlyList<VirtioPciFunction?> PciFunctions
    {
        get
        {
            lock (_lock)
            {
                return [.. _pci];
            }
        }
    }

    /// <summary>The virtio-mmio devices, in the order they were added.</summary>
    public IReadOnlyList<VirtioMmioTransport> MmioDevices
    {
        get
        {
            lock (_lock)
            {
                return [.. _mmio];
            }
        }
    }

    /// <summary>Plugs a virtio device into the next free PCI slot (device 1, 2, ...).</summary>
    /// <param name="device">The virtio device.</param>
    /// <param name="options">Transport options; defaults when null.</param>
    /// <param name="logger">The transport's log of guest mistakes; none when null.</param>
    /// <returns>The function, for host-side inspection (counters, status, snapshots).</returns>
    public VirtioPciFunction AddPciDevice(IVirtioDevice device, VirtioPciFunctionOptions? options = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        lock (_lock)
        {
            int slot = Array.FindIndex(_pci, 1, f => f is null);
            if (slot < 0)
            {
                throw new InvalidOperationException("The PCI bus is full.");
            }

            int line = _options.PciIntxLineBase + ((slot + 1 - 1) % 4);
            var function = new VirtioPciFunction(device, Memory, Interrupts.ConnectDevice(line), options, logger);
            function.BarChanged += OnBarChanged;
            _pci[slot] = function;
            return function;
        }
    }

    /// <summary>Plugs a virtio device in as a virtio-mmio device at the next fixed address, with its own interrupt line.</summary>
    /// <param name="device">The virtio device.</param>
    /// <param name="options">Transport options; defaults when null.</param>
    /// <param name="logger">The transport's log of guest mistakes; none when null.</param>
    /// <returns>The transport, for host-side inspection.</returns>
    public VirtioMmioTransport AddMmioDevice(IVirtioDevice device, VirtioMmioOptions? options = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        lock (_lock)
        {
            int index = _mmio.Count;
            int line = _options.VirtioMmioFirstLine + index;
            var transport = new VirtioMmioTransport(device, Memory, Interrupts.ConnectDevice(line), options, logger);
            if (transport.RegionSize > MmioStride)
            {
                throw new ArgumentException("The device's configuration space does not fit the 4 KiB virtio-mmio slot.", nameof(device));
            }

            ulong address = _options.VirtioMmioBase + ((ulong)index * MmioStride);
            _mmio.Add(transport);
            _mmioSlots.Add(new VirtioMmioSlot(address, transport.RegionSize, line));
            AddRegionUnsynchronized(new MmioRegion(address, transport.RegionSize, transport, -1, (data, offset) => transport.Read(offset, data), (data, offset) => transport.Write(offset, data)));
            return transport;
        }
    }

    /// <summary>
    /// Captures the machine for a snapshot: every transport's state and a copy of RAM. Device
    /// state (the device's own <c>SaveState</c>) is the caller's to capture alongside, and to
    /// restore after <see cref="RestoreSnapshot"/>.
    /// </summary>
    /// <remarks>Call with the guest's vCPUs stopped and the devices quiesced.</remarks>
    public MachineSnapshot SaveSnapshot()
    {
        lock (_lock)
        {
            byte[][] pci = [.. _pci.Select(f => f?.SaveState() ?? [])];
            byte[][] mmio = [.. _mmio.Select(d => d.SaveState())];
            return new MachineSnapshot(CopyRam(), pci, mmio);
        }
    }

    /// <summary>
    /// Restores RAM contents and every transport from <paramref name="snapshot"/> (the machine's
    /// devices must be the ones it was taken with). Restoring a transport quiesces its device (IVirtioDevice.Quiesce, no guest-reset side effects) and
    /// re-activates it with the restored queues, so restore each device's own state after this.
    /// </summary>
    /// <param name="snapshot">A snapshot of this machine.</param>
    /// <returns>The first transport status that is not <see cref="SnapshotStatus.Ok"/>, or Ok.</returns>
    public SnapshotStatus RestoreSnapshot(MachineSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        VirtioPciFunction?[] pci;
        VirtioMmioTransport[] mmio;
        lock (_lock)
        {
            if (snapshot.PciFunctions.Count != _pci.Length || snapshot.MmioDevices.Count != _mmio.Count)
            {
                throw new ArgumentException("The snapshot was taken on a machine with other devices.", nameof(snapshot));
            }

            pci = [.. _pci];
            mmio = [.. _mmio];
        }

        WriteRam(snapshot.Ram);
        SnapshotStatus result = SnapshotStatus.Ok;
        for (int i = 0; i < pci.Length; i++)
        {
            if (pci[i] is VirtioPciFunction function)
            {
                SnapshotStatus status = function.RestoreState(snapshot.PciFunctions[i]);
                result = result == SnapshotStatus.Ok ? status : result;
            }
        }

        for (int i = 0; i < mmio.Length; i++)
        {
            SnapshotStatus status = mmio[i].RestoreState(snapshot.MmioDevices[i]);
            result = result == SnapshotStatus.Ok ? status : result;
        }

        return result;
    }

    /// <inheritdoc />
    public bool TryRead(ulong address, Span<byte> data)
    {
        MmioRegion? region = Find(address, data.Length);
        if (region is null)
        {
            data.Fill(0xFF);
            Interlocked.Increment(ref _unclaimedMmio);
            return false;
        }

        region.Read(data, address - region.Start);
        return true;
    }

    /// <inheritdoc />
    public bool TryWrite(ulong address, ReadOnlySpan<byte> data)
    {
        MmioRegion? region = Find(address, data.Length);
        if (region is null)
        {
            Interlocked.Increment(ref _unclaimedMmio);
            return false;
        }

        region.Write(data, address - region.Start);
        return true;
    }

    /// <inheritdoc />
    public void In(ushort port, Span<byte> data)
    {
        if (_options.ConfigPorts && port == ConfigAddressPort && data.Length == 4)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(data, Volatile.Read(ref _configAddress));
            return;
        }

        if (_options.ConfigPorts && port >= ConfigDataPort && port + data.Length <= ConfigDataPort + 4)
        {
            uint address = Volatile.Read(ref _configAddress);
            if ((address & 0x8000_0000) != 0)
            {
                ReadConfig(address, port - ConfigDataPort, data);
                return;
            }
        }

        data.Fill(0xFF);
        Interlocked.Increment(ref _unclaimedPorts);
    }

    /// <inheritdoc />
    public void Out(ushort port, ReadOnlySpan<byte> data)
    {
        if (_options.ConfigPorts && port == ConfigAddressPort && data.Length == 4)
        {
            // Bits 1:0 are reserved and read back as zero.
            Volatile.Write(ref _configAddress, BinaryPrimitives.ReadUInt32LittleEndian(data) & 0x80FF_FFFC);
            return;
        }

        if (_options.ConfigPorts && port >= ConfigDataPort && port + data.Length <= ConfigDataPort + 4)
        {
            uint address = Volatile.Read(ref _configAddress);
            if ((address & 0x8000_0000) != 0)
            {
                WriteConfig(address, port - ConfigDataPort, data);
                return;
            }
        }

        Interlocked.Increment(ref _unclaimedPorts);
    }

    /// <summary>Releases guest RAM. Stop the guest and the devices first.</summary>
    public void Dispose() => Memory.Dispose();

    private static byte[] BuildHostBridge()
    {
        // 00:00.0: a host bridge (class 06/00/00), vendor 0x8086 device 0x29C0, no capabilities.
        byte[] config = new byte[VirtioPciFunction.ConfigSpaceSize];
        BinaryPrimitives.WriteUInt16LittleEndian(config, 0x8086);
        BinaryPrimitives.WriteUInt16LittleEndian(config.AsSpan(2), 0x29C0);
        config[PciConfigRegisters.BaseClass] = 0x06;
        return config;
    }

    private MmioRegion? Find(ulong address, int length)
    {
        MmioRegion[] regions = _regions;
        foreach (MmioRegion region in regions)
        {
            ulong offset = address - region.Start;
            if (offset < region.Size && (ulong)length <= region.Size - offset)
            {
                return region;
            }
        }

        return null;
    }

    // Mechanism #1 address: bit 31 enable, 23:16 bus, 15:11 device, 10:8 function, 7:2 register.
    private void ReadConfig(uint address, int byteOffset, Span<byte> data)
    {
        int bus = (int)((address >> 16) & 0xFF);
        int device = (int)((address >> 11) & 0x1F);
        int function = (int)((address >> 8) & 0x7);
        ReadFunctionConfig(bus, device, function, (address & 0xFC) + (uint)byteOffset, data);
    }

    private void WriteConfig(uint address, int byteOffset, ReadOnlySpan<byte> data)
    {
        int bus = (int)((address >> 16) & 0xFF);
        int device = (int)((address >> 11) & 0x1F);
        int function = (int)((address >> 8) & 0x7);
        WriteFunctionConfig(bus, device, function, (address & 0xFC) + (uint)byteOffset, data);
    }

    private void ReadEcam(ulong offset, Span<byte> data)
    {
        int device = (int)((offset >> 15) & 0x1F);
        int function = (int)((offset >> 12) & 0x7);
        ReadFunctionConfig(0, device, function, (uint)(offset & 0xFFF), data);
    }

    private void WriteEcam(ulong offset, ReadOnlySpan<byte> data)
    {
        int device = (int)((offset >> 15) & 0x1F);
        int function = (int)((offset >> 12) & 0x7);
        WriteFunctionConfig(0, device, function, (uint)(offset & 0xFFF), data);
    }

    private void ReadFunctionConfig(int bus, int device, int function, uint register, Span<byte> data)
    {
        if (bus == 0 && function == 0 && register + (uint)data.Length <= VirtioPciFunction.ConfigSpaceSize)
        {
            if (device == 0)
            {
                _hostBridge.AsSpan((int)register, data.Length).CopyTo(data);
                return;
            }

            VirtioPciFunction? target = Volatile.Read(ref _pci[device]);
            if (target is not null)
            {
                target.ReadConfig(register, data);
                return;
            }
        }

        // No function there (or extended configuration space, which these functions lack).
        data.Fill(0xFF);
    }

    private void WriteFunctionConfig(int bus, int device, int function, uint register, ReadOnlySpan<byte> data)
    {
        if (bus == 0 && function == 0 && device != 0 && register + (uint)data.Length <= VirtioPciFunction.ConfigSpaceSize)
        {
            Volatile.Read(ref _pci[device])?.WriteConfig(register, data);
        }
    }

    private void OnBarChanged(object? sender, PciBarChangedEventArgs e)
    {
        var function = (VirtioPciFunction)sender!;
        lock (_lock)
        {
            MmioRegion[] current = _regions;
            List<MmioRegion> next = [.. current.Where(r => !(ReferenceEquals(r.Owner, function) && r.Index == e.Current.BarIndex))];
            if (e.Current.IsEnabled && e.Current.Address != 0)
            {
                int bar = e.Current.BarIndex;
                next.Add(new MmioRegion(e.Current.Address, e.Current.Size, function, bar,
                    (data, offset) => function.ReadBar(bar, offset, data),
                    (data, offset) => function.WriteBar(bar, offset, data)));
            }

            _regions = [.. next];
        }
    }

    private void AddRegionUnsynchronized(MmioRegion region) => _regions = [.. _regions, region];

    private byte[] CopyRam()
    {
        byte[] copy = new byte[_options.RamSize];
        ulong done = 0;
        while (done < _options.RamSize)
        {
            uint chunk = (uint)Math.Min(_options.RamSize - done, 1u << 30);
            Memory.TryGetSlice(_options.RamBase + done, chunk, out GuestMemorySlice slice);
            slice.Span.CopyTo(copy.AsSpan((int)done, (int)chunk));
            done += chunk;
        }

        return copy;
    }

    private void WriteRam(byte[] ram)
    {
        if ((ulong)ram.LongLength != _options.RamSize)
        {
            throw new ArgumentException("The snapshot's RAM size differs from the machine's.", nameof(ram));
        }

        Memory.TryWrite(_options.RamBase, ram);
    }
}
