using VirtioPanic.GuestDriver.Machine;
using VirtioPanic.GuestDriver.Memory;
using VirtioPanic.GuestDriver.Virtio;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.GuestDriver.Kernel;

/// <summary>
/// A minimal guest kernel on an <see cref="IGuestMachine"/>: one vCPU, a page allocator over the
/// machine's RAM, firmware's PCI resource assignment and the bus scans that find virtio devices
/// (PCI by vendor and device ID, virtio-mmio from the machine's layout). The entry point of the
/// scenario API: boot it, run guest code with <see cref="Run{T}"/>, dispose it to stop the vCPU.
/// </summary>
/// <example>
/// <code>
/// using var machine = new TestMachine();
/// machine.AddPciDevice(new MyDevice());
/// using GuestKernel guest = GuestKernel.Boot(machine);
/// GuestVirtioDevice device = guest.FindVirtioDevice(MyDevice.Id);
/// guest.Run(() => device.Initialize(new VirtioDriverOptions()));
/// </code>
/// </example>
public sealed class GuestKernel : IDisposable
{
    private readonly List<GuestVirtioDevice> _devices = [];

    private GuestKernel(IGuestMachine machine, GuestKernelOptions options)
    {
        Machine = machine;
        MachineLayout layout = machine.Layout;
        Allocator = new GuestAllocator(machine.Memory, layout.GuestRamBase, layout.GuestRamSize);
        Cpu = new GuestCpu(machine, options.HangTimeout);
    }

    /// <summary>The machine the guest runs on.</summary>
    public IGuestMachine Machine { get; }

    /// <summary>The guest's vCPU.</summary>
    public GuestCpu Cpu { get; }

    /// <summary>The guest's allocator for rings and buffers.</summary>
    public GuestAllocator Allocator { get; }

    /// <summary>Guest memory.</summary>
    public GuestMemory Memory => Machine.Memory;

    /// <summary>The PCI configuration mechanism in use, or null when the machine has no PCI.</summary>
    public PciConfigMechanism? PciConfigMechanism { get; private set; }

    /// <summary>Every virtio device the boot scans found, PCI first, in bus order.</summary>
    public IReadOnlyList<GuestVirtioDevice> VirtioDevices => _devices;

    /// <summary>
    /// Boots a guest on <paramref name="machine"/>: starts the vCPU, assigns PCI resources the
    /// way firmware does, and scans PCI and virtio-mmio for virtio devices (none is initialized).
    /// </summary>
    /// <param name="machine">The machine.</param>
    /// <param name="options">Boot options; defaults when null.</param>
    public static GuestKernel Boot(IGuestMachine machine, GuestKernelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        options ??= new GuestKernelOptions();
        var kernel = new GuestKernel(machine, options);
        try
        {
            kernel.Cpu.Invoke(() => kernel.Scan(options.PciConfigMechanism));
        }
        catch
        {
            kernel.Dispose();
            throw;
        }

        return kernel;
    }

    /// <summary>The <paramref name="index"/>-th virtio device with ID <paramref name="deviceId"/>.</summary>
    /// <param name="deviceId">Virtio device ID.</param>
    /// <param name="index">Which one, when there are several.</param>
    /// <exception cref="InvalidOperationException">No such device was found.</exception>
    public GuestVirtioDevice FindVirtioDevice(uint deviceId, int index = 0) =>
        _devices.Where(d => d.DeviceId == deviceId).Skip(index).FirstOrDefault()
        ?? throw new InvalidOperationException($"No virtio device {deviceId} (#{index}) was found.");

    /// <summary>Runs guest code on the vCPU and returns its result (at most <see cref="GuestKernelOptions.HangTimeout"/> of real time).</summary>
    /// <typeparam name="T">Result type.</typeparam>
    /// <param name="step">Guest code.</param>
    public T Run<T>(Func<T> step) => Cpu.Invoke(step);

    /// <summary>Runs guest code on the vCPU.</summary>
    /// <param name="step">Guest code.</param>
    public void Run(Action step) => Cpu.Invoke(step);

    /// <summary>Starts guest code on the vCPU without waiting (join it with <see cref="GuestCpu.Join{T}"/>).</summary>
    /// <typeparam name="T">Result type.</typeparam>
    /// <param name="step">Guest code.</param>
    public Task<T> RunAsync<T>(Func<T> step) => Cpu.InvokeAsync(step);

    /// <summary>Host side: waits until the guest is asleep with nothing to do (see <see cref="GuestCpu.WaitForQuiescence"/>).</summary>
    public void WaitForQuiescence() => Cpu.WaitForQuiescence();

    /// <summary>Allocates a zeroed guest buffer.</summary>
    /// <param name="length">Length in bytes.</param>
    /// <param name="alignment">Alignment, a power of two.</param>
    /// <returns>Its guest-physical address.</returns>
    public ulong AllocateBuffer(ulong length, ulong alignment = 16) => Allocator.Allocate(length, alignment);

    /// <summary>Copies guest memory out.</summary>
    /// <param name="address">Guest-physical address.</param>
    /// <param name="length">Bytes.</param>
    public byte[] ReadMemory(ulong address, int length)
    {
        byte[] data = new byte[length];
        if (!Memory.TryRead(address, data))
        {
            throw new ArgumentOutOfRangeException(nameof(address), "Not guest RAM.");
        }

        return data;
    }

    /// <summary>Copies bytes into guest memory.</summary>
    /// <param name="address">Guest-physical address.</param>
    /// <param name="data">Bytes.</param>
    public void WriteMemory(ulong address, ReadOnlySpan<byte> data)
    {
        if (!Memory.TryWrite(address, data))
        {
            throw new ArgumentOutOfRangeException(nameof(address), "Not guest RAM.");
        }
    }

    /// <summary>Stops the vCPU (joined with a timeout). Devices are left as they are.</summary>
    public void Dispose() => Cpu.Dispose();

    private void Scan(PciConfigMechanism mechanism)
    {
        MachineLayout layout = Machine.Layout;
        if (layout.Pci is PciHostBridgeLayout pci)
        {
            var config = PciConfigAccess.Create(Machine, mechanism);
            PciConfigMechanism = config.Mechanism;
            foreach (PciFunctionInfo function in PciFirmware.EnumerateAndAssign(config, pci))
            {
                if (PciModernTransport.TryProbe(Machine, config, function) is PciModernTransport transport)
                {
                    _devices.Add(new GuestVirtioDevice(this, transport));
                }
            }
        }

        foreach (VirtioMmioSlot slot in layout.MmioDevices)
        {
            if (MmioTransport.TryProbe(Machine, slot) is MmioTransport transport)
            {
                _devices.Add(new GuestVirtioDevice(this, transport));
            }
        }
    }
}
