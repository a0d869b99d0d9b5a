using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Transport.Pci;

// Design: a virtio device as a type-0 PCI function (virtio 1.2 §4.1 "Virtio Over PCI Bus").
//
// The hypervisor routes three kinds of guest exits here: configuration-space accesses
// (ReadConfig/WriteConfig), memory accesses to the BARs (ReadBar/WriteBar, or
// TryReadMemory/TryWriteMemory by guest-physical address), and, optionally, doorbell writes on a
// fast path (NotifyQueue). Layout: VirtioPciLayout. Pieces, one owner each:
//   this class          configuration space bytes, BARs, Command; under _lock.
//   VirtioDeviceController  status machine, features, queues; its own lock; lock-free notify.
//   PciInterruptRouter  ISR, INTx line, vector mappings; lock-free.
//   MsixTable           MSI-X table/PBA/enable/mask; its own short lock.
// Lock order: this._lock is never held while calling the controller, the router or MsixTable
// code that raises interrupts, so interrupts are always raised with no lock held, and device
// workers (which only ever touch the router and MsixTable) can never wait on a vCPU.
// Every guest access that does not match a register returns zeros or is dropped, is counted by
// kind and logged at debug level with a rate limit (AccessReporter); nothing here throws on
// guest input.

/// <summary>
/// A virtio device exposed as a PCI function: configuration space with the virtio capabilities
/// and MSI-X, two 64-bit memory BARs (virtio structures in BAR 0, MSI-X table and PBA in BAR 2),
/// INTx with the ISR status register, and save/restore of the whole function.
/// </summary>
/// <remarks>
/// <para>Thread-safe: every member may be called from any vCPU thread. The notify path
/// (<see cref="NotifyQueue"/>, or a 16-bit write to a doorbell) takes no lock and allocates
/// nothing.</para>
/// <para>Guest accesses never throw: invalid ones read zeros or are dropped, and are counted
/// (<see cref="GetInvalidAccessCount"/>).</para>
/// </remarks>
public sealed partial class VirtioPciFunction
{
    /// <summary>Size of the configuration space (conventional PCI).</summary>
    public const int ConfigSpaceSize = 256;

    private const string TransportName = "virtio-pci";

    private readonly Lock _lock = new();
    private readonly VirtioDeviceController _controller;
    private readonly PciInterruptRouter _router;
    private readonly MsixTable _msix;
    private readonly AccessReporter _reporter;
    private readonly VirtioPciLayout _layout;
    private readonly PciBar _virtioBar;
    private readonly PciBar _msixBar;
    private readonly byte[] _template = new byte[ConfigSpaceSize];
    private readonly byte[] _writeMask = new byte[ConfigSpaceSize];
    private readonly byte[] _config = new byte[ConfigSpaceSize];
    private readonly PciBarMapping[] _reported = new PciBarMapping[2];
    private volatile bool _memoryEnabled;

    /// <summary>Creates the function in its power-on state (BARs unassigned, decoding off, MSI-X disabled).</summary>
    /// <param name="device">The virtio device; its ID must be 1–63 (modern PCI device IDs 0x1041–0x107F).</param>
    /// <param name="memory">The guest's memory.</param>
    /// <param name="interrupts">Where MSI-X messages and the INTx level go.</param>
    /// <param name="options">Identity and resources; defaults when null.</param>
    /// <param name="logger">Debug log of guest mistakes (rate-limited); none when null.</param>
    /// <exception cref="ArgumentException">The device or the options cannot be represented.</exception>
    public VirtioPciFunction(IVirtioDevice device, GuestMemory memory, IInterruptSink interrupts, VirtioPciFunctionOptions? options = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(interrupts);
        options ??= new VirtioPciFunctionOptions();

        uint virtioId = device.DeviceId;
        if (virtioId is 0 or > 63)
        {
            throw new ArgumentException("Modern virtio-pci device IDs are 0x1040 + the virtio ID, which must be 1 to 63 (virtio 1.2 §4.1.2).", nameof(device));
        }

        int queueCount = device.QueueCount;
        if (queueCount is < 0 or > ushort.MaxValue)
        {
            throw new ArgumentException("The device's queue count must be between 0 and 65535.", nameof(device));
        }

        int configSize = device.ConfigSize;
        if (configSize is < 0 or > VirtioPciLayout.MaxDeviceConfigLength)
        {
            throw new ArgumentException("The device's configuration space must be at most 4096 bytes.", nameof(device));
        }

        if (options.RevisionId == 0 || options.ClassCode > 0xFF_FFFF)
        {
            throw new ArgumentException("RevisionId must be at least 1 and ClassCode fit in 24 bits.", nameof(options));
        }

        int vectors = options.MsixVectorCount == 0 ? Math.Min(2048, queueCount + 1) : options.MsixVectorCount;
        if (vectors is < 1 or > 2048)
        {
            throw new ArgumentException("MsixVectorCount must be between 1 and 2048.", nameof(options));
        }

        _reporter = new AccessReporter(logger ?? NullLogger.Instance, TransportName, options);
        _msix = new MsixTable(interrupts, vectors);
        _router = new PciInterruptRouter(interrupts, _msix, queueCount, _reporter);
        _controller = new VirtioDeviceController(device, memory, _router, options.OfferRingReset);
        _layout = new VirtioPciLayout(queueCount, configSize, vectors);
        _virtioBar = new PciBar(VirtioPciLayout.VirtioBarIndex, _layout.VirtioBarSize);
        _msixBar = new PciBar(VirtioPciLayout.MsixBarIndex, _layout.MsixBarSize);
        PciCapabilities.Build(_template, _writeMask, _layout, (ushort)(PciCapabilities.VirtioDeviceIdBase + virtioId), options, vectors);
        _template.CopyTo(_config, 0);
        _reported[0] = CurrentMappingUnsynchronized(_virtioBar);
        _reported[1] = CurrentMappingUnsynchronized(_msixBar);
    }

    /// <summary>
    /// Raised (outside any lock) whenever a BAR's effective mapping changes: the guest moved it
    /// or switched memory decoding on or off. Route guest accesses in
    /// <see cref="PciBarChangedEventArgs.Current"/> to <see cref="ReadBar"/>/<see cref="WriteBar"/>.
    /// </summary>
    public event EventHandler<PciBarChangedEventArgs>? BarChanged;

    /// <summary>The virtio device behind the function.</summary>
    public IVirtioDevice Device => _controller.Device;

    /// <summary>The PCI device ID (0x1040 + virtio device ID).</summary>
    public ushort DeviceId => (ushort)(PciCapabilities.VirtioDeviceIdBase + _controller.Device.DeviceId);

    /// <summary>The device status as the driver sees it.</summary>
    public DeviceStatus DeviceStatus => _controller.Status;

    /// <summary>The features negotiated at FEATURES_OK (0 before).</summary>
    public ulong NegotiatedFeatures => _controller.NegotiatedFeatures;

    /// <summary>Number of MSI-X vectors (table size).</summary>
    public int MsixVectorCount => _msix.VectorCount;

    /// <summary>Total invalid guest accesses counted so far (all kinds).</summary>
    public long InvalidAccessCount => _reporter.Total;

    /// <summary>Kicks dropped: unknown or disabled queue, or a device that was not live.</summary>
    public long DroppedNotificationCount => _controller.DroppedNotifications;

    /// <summary>
    /// Exceptions the device threw from a guest-driven call (a notification, a configuration access,
    /// activation, reset) that the function contained: each set DEVICE_NEEDS_RESET (with a
    /// configuration-change interrupt once the driver is live) instead of reaching the caller of a
    /// configuration or BAR access. The first is logged as an error.
    /// </summary>
    public long DeviceFaultCount => _controller.DeviceFaults;

    /// <summary>Invalid guest accesses counted so far of one kind.</summary>
    /// <param name="kind">The kind.</param>
    public long GetInvalidAccessCount(InvalidAccessKind kind) => _reporter.Count(kind);

    /// <summary>Current mappings of the implemented BARs (BAR 0: virtio structures, BAR 2: MSI-X).</summary>
    public PciBarMapping[] GetBarMappings()
    {
        lock (_lock)
        {
            return [CurrentMappingUnsynchronized(_virtioBar), CurrentMappingUnsynchronized(_msixBar)];
        }
    }

    /// <summary>
    /// The queues' doorbell addresses for fast-path routing; empty while memory decoding is off.
    /// Refresh after <see cref="BarChanged"/>.
    /// </summary>
    public VirtioDoorbell[] GetDoorbells()
    {
        ulong address;
        lock (_lock)
        {
            if (!_memoryEnabled)
            {
                return [];
            }

            address = _virtioBar.Address + VirtioPciLayout.NotifyOffset;
        }

        var doorbells = new VirtioDoorbell[_controller.QueueCount];
        for (int i = 0; i < doorbells.Length; i++)
        {
            doorbells[i] = new VirtioDoorbell(address + ((ulong)i * VirtioPciLayout.NotifyOffMultiplier), 2, i);
        }

        return doorbells;
    }

    /// <summary>
    /// Kicks a queue directly, as a doorbell write does: the fast path for a hypervisor that routes
    /// <see cref="GetDoorbells"/> addresses itself. Lock-free and allocation-free.
    /// </summary>
    /// <param name="queueIndex">The queue.</param>
    /// <returns>True when the kick reached the device; false when it was dropped (and counted).</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool NotifyQueue(int queueIndex) => _controller.Notify(queueIndex);

    /// <summary>A guest read from a BAR.</summary>
    /// <param name="barIndex">BAR index (0 or 2; others read zeros).</param>
    /// <param name="offset">Offset inside the BAR.</param>
    /// <param name="data">Destination; its length is the access width.</param>
    public void ReadBar(int barIndex, ulong offset, Span<byte> data)
    {
        switch (barIndex)
        {
            case VirtioPciLayout.VirtioBarIndex:
                ReadVirtioBar(offset, data);
                break;
            case VirtioPciLayout.MsixBarIndex:
                ReadMsixBar(offset, data);
                break;
            default:
                data.Clear();
                _reporter.Invalid(InvalidAccessKind.OutOfRange, AccessRegion.Bar, offset, data.Length, write: false);
                break;
        }
    }

    /// <summary>A guest write to a BAR.</summary>
    /// <param name="barIndex">BAR index (0 or 2; others drop the write).</param>
    /// <param name="offset">Offset inside the BAR.</param>
    /// <param name="data">The bytes written; the length is the access width.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void WriteBar(int barIndex, ulong offset, ReadOnlySpan<byte> data)
    {
        if (barIndex == VirtioPciLayout.VirtioBarIndex)
        {
            WriteVirtioBar(offset, data);
        }
        else if (barIndex == VirtioPciLayout.MsixBarIndex)
        {
            WriteMsixBar(offset, data);
        }
        else
        {
            _reporter.Invalid(InvalidAccessKind.OutOfRange, AccessRegion.Bar, offset, data.Length, write: true);
        }
    }

    /// <summary>
    /// A guest memory read by guest-physical address: handled when memory decoding is on and the
    /// address falls in one of the BARs.
    /// </summary>
    /// <param name="address">Guest-physical address.</param>
    /// <param name="data">Destination; its length is the access width.</param>
    /// <returns>True when this function claimed the access.</returns>
    public bool TryReadMemory(ulong address, Span<byte> data)
    {
        if (!_memoryEnabled)
        {
            return false;
        }

        ulong offset = address - _virtioBar.Address;
        if (offset < _virtioBar.Size)
        {
            ReadVirtioBar(offset, data);
            return true;
        }

        offset = address - _msixBar.Address;
        if (offset < _msixBar.Size)
        {
            ReadMsixBar(offset, data);
            return true;
        }

        return false;
    }

    /// <summary>
    /// A guest memory write by guest-physical address: handled when memory decoding is on and the
    /// address falls in one of the BARs. A doorbell write takes no lock.
    /// </summary>
    /// <param name="address">Guest-physical address.</param>
    /// <param name="data">The bytes written; the length is the access width.</param>
    /// <returns>True when this function claimed the access.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryWriteMemory(ulong address, ReadOnlySpan<byte> data)
    {
        if (!_memoryEnabled)
        {
            return false;
        }

        ulong offset = address - _virtioBar.Address;
        if (offset < _virtioBar.Size)
        {
            WriteVirtioBar(offset, data);
            return true;
        }

        offset = address - _msixBar.Address;
        if (offset < _msixBar.Size)
        {
            WriteMsixBar(offset, data);
            return true;
        }

        return false;
    }

    /// <summary>
    /// Function-level reset (what a VM reset does): the virtio device is reset, the configuration
    /// space, BARs and MSI-X table return to their power-on values, and a <see cref="BarChanged"/>
    /// event reports decoding switched off.
    /// </summary>
    public void Reset()
    {
        _controller.Reset();
        _msix.Reset();
        lock (_lock)
        {
            _template.CopyTo(_config, 0);
            _virtioBar.Set(0);
            _msixBar.Set(0);
            _memoryEnabled = false;
        }

        _router.ResetVirtio();
        _router.SetIntxDisabled(false);
        PublishBarChanges();
    }

    private static PciBarMapping Mapping(PciBar bar, bool enabled) => new(bar.Index, bar.Address, bar.Size, enabled);

    private PciBarMapping CurrentMappingUnsynchronized(PciBar bar) => Mapping(bar, _memoryEnabled);

    // Raises BarChanged for every BAR whose (address, enabled) pair differs from what was last
    // reported. The comparison and the bookkeeping happen under the lock; the events after it.
    private void PublishBarChanges()
    {
        PciBarMapping previousVirtio, currentVirtio, previousMsix, currentMsix;
        lock (_lock)
        {
            previousVirtio = _reported[0];
            previousMsix = _reported[1];
            currentVirtio = CurrentMappingUnsynchronized(_virtioBar);
            currentMsix = CurrentMappingUnsynchronized(_msixBar);
            _reported[0] = currentVirtio;
            _reported[1] = currentMsix;
        }

        EventHandler<PciBarChangedEventArgs>? handler = BarChanged;
        if (handler is null)
        {
            return;
        }

        if (previousVirtio != currentVirtio)
        {
            handler(this, new PciBarChangedEventArgs(previousVirtio, currentVirtio));
        }

        if (previousMsix != currentMsix)
        {
            handler(this, new PciBarChangedEventArgs(previousMsix, currentMsix));
        }
    }

    private void ReadMsixBar(ulong offset, Span<byte> data)
    {
        InvalidAccessKind kind;
        AccessRegion region = AccessRegion.MsixTable;
        if (offset < _layout.MsixTableLength)
        {
            kind = _msix.ReadTable(offset, data);
        }
        else if (offset - _layout.MsixPbaOffset < _layout.MsixPbaLength)
        {
            region = AccessRegion.MsixPba;
            kind = _msix.ReadPba(offset - _layout.MsixPbaOffset, data);
        }
        else
        {
            data.Clear();
            region = AccessRegion.Bar;
            kind = offset < _layout.MsixBarSize ? InvalidAccessKind.Reserved : InvalidAccessKind.OutOfRange;
        }

        if (kind != InvalidAccessKind.None)
        {
            _reporter.Invalid(kind, region, offset, data.Length, write: false);
        }
    }

    private void WriteMsixBar(ulong offset, ReadOnlySpan<byte> data)
    {
        InvalidAccessKind kind;
        AccessRegion region = AccessRegion.MsixTable;
        if (offset < _layout.MsixTableLength)
        {
            kind = _msix.WriteTable(offset, data);
        }
        else if (offset - _layout.MsixPbaOffset < _layout.MsixPbaLength)
        {
            region = AccessRegion.MsixPba;
            kind = _msix.CheckPbaWrite(offset - _layout.MsixPbaOffset, data.Length);
        }
        else
        {
            region = AccessRegion.Bar;
            kind = offset < _layout.MsixBarSize ? InvalidAccessKind.Reserved : InvalidAccessKind.OutOfRange;
        }

        if (kind != InvalidAccessKind.None)
        {
            _reporter.Invalid(kind, region, offset, data.Length, write: true);
        }
    }
}
