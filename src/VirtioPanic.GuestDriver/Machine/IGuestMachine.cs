using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.GuestDriver.Machine;

/// <summary>
/// What guest code sees of the machine it runs on: its memory, the buses its loads and stores go
/// to, its interrupt controller, its clock, and the firmware tables that say where things are.
/// </summary>
/// <remarks>
/// <para>Implement this to run the harness's guest drivers against your own hypervisor: route
/// <see cref="Mmio"/> and <see cref="PortIo"/> to your device models, deliver your devices'
/// interrupts through <see cref="Interrupts"/>, and describe the layout in <see cref="Layout"/>.
/// <see cref="TestMachine"/> is the reference implementation.</para>
/// <para>Every member is called from guest (vCPU) threads, concurrently with host threads.</para>
/// </remarks>
public interface IGuestMachine
{
    /// <summary>Guest-physical RAM. The guest kernel allocates rings and buffers inside <see cref="MachineLayout.GuestRamBase"/>..+<see cref="MachineLayout.GuestRamSize"/>.</summary>
    GuestMemory Memory { get; }

    /// <summary>The machine's clock; every guest timeout and timer runs on it (a virtual clock in tests).</summary>
    TimeProvider Clock { get; }

    /// <summary>Memory-mapped I/O: guest loads and stores outside RAM.</summary>
    IMmioBus Mmio { get; }

    /// <summary>Port I/O (x86 <c>in</c>/<c>out</c>), or null when the machine has none.</summary>
    IPortIoBus? PortIo { get; }

    /// <summary>The guest's interrupt controller.</summary>
    IGuestInterruptController Interrupts { get; }

    /// <summary>Where RAM, the PCI host bridge and the virtio-mmio devices are (what ACPI or a device tree tells a kernel).</summary>
    MachineLayout Layout { get; }
}
