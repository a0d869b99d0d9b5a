using System.Buffers.Binary;
using VirtioPanic.GuestDriver.Machine;
using VirtioPanic.Transport.Mmio;
using VirtioPanic.Transport.Pci;
using VirtioPanic.Virtio.Device;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.GuestDriver.Tests.Machine;

// A second, independent implementation of the machine interfaces, written the way a hypervisor
// author would wire their own VMM into the harness: RAM at 1 GiB, PCI through ports 0xCF8/0xCFC
// only (no ECAM), one virtio-pci function at slot 3 whose BARs are routed from the function's
// own TryReadMemory/TryWriteMemory (no BarChanged bookkeeping), one virtio-mmio device at
// 0x0A000000 on line 10, and a minimal interrupt controller of its own.
internal sealed class HypervisorMachine : IGuestMachine, IMmioBus, IPortIoBus, IDisposable
{
    internal const ulong RamBase = 0x4000_0000;
    internal const ulong MmioBase = 0x0A00_0000;
    internal const int MmioLine = 10;
    internal const int PciSlot = 3;

    private readonly SimpleInterrupts _interrupts = new();
    private uint _address;

    internal HypervisorMachine(IVirtioDevice pciDevice, IVirtioDevice mmioDevice, TimeProvider clock)
    {
        Memory = GuestMemory.CreateAnonymous(16 << 20, RamBase);
        Clock = clock;
        Pci = new VirtioPciFunction(pciDevice, Memory, new Sink(_interrupts, 11));
        Mmio = new VirtioMmioTransport(mmioDevice, Memory, new Sink(_interrupts, MmioLine));
    }

    public GuestMemory Memory { get; }

    public TimeProvider Clock { get; }

    IMmioBus IGuestMachine.Mmio => this;

    public IPortIoBus? PortIo => this;

    public IGuestInterruptController Interrupts => _interrupts;

    public MachineLayout Layout => new()
    {
        GuestRamBase = RamBase + (4 << 20),
        GuestRamSize = 12 << 20,
        Pci = new PciHostBridgeLayout { EcamBase = null, HasConfigPorts = true, MemoryWindowBase = 0x8000_0000, MemoryWindowSize = 0x1000_0000, IntxLineBase = 8 },
        MmioDevices = [new VirtioMmioSlot(MmioBase, Mmio.RegionSize, MmioLine)],
    };

    internal VirtioPciFunction Pci { get; }

    internal VirtioMmioTransport Mmio { get; }

    internal long Messages => _interrupts.Messages;

    public bool TryRead(ulong address, Span<byte> data)
    {
        if (address - MmioBase < Mmio.RegionSize)
        {
            Mmio.Read(address - MmioBase, data);
            return true;
        }

        if (Pci.TryReadMemory(address, data))
        {
            return true;
        }

        data.Fill(0xFF);
        return false;
    }

    public bool TryWrite(ulong address, ReadOnlySpan<byte> data)
    {
        if (address - MmioBase < Mmio.RegionSize)
        {
            Mmio.Write(address - MmioBase, data);
            return true;
        }

        return Pci.TryWriteMemory(address, data);
    }

    public void In(ushort port, Span<byte> data)
    {
        int slot = (int)((_address >> 11) & 0x1F);
        if (port >= 0xCFC && (_address & 0x8000_0000) != 0 && slot == PciSlot && (_address & 0x00FF_0700) == 0)
        {
            Pci.ReadConfig((_address & 0xFC) + (uint)(port - 0xCFC), data);
            return;
        }

        data.Fill(0xFF);
    }

    public void Out(ushort port, ReadOnlySpan<byte> data)
    {
        if (port == 0xCF8 && data.Length == 4)
        {
            _address = BinaryPrimitives.ReadUInt32LittleEndian(data);
            return;
        }

        int slot = (int)((_address >> 11) & 0x1F);
        if (port >= 0xCFC && (_address & 0x8000_0000) != 0 && slot == PciSlot && (_address & 0x00FF_0700) == 0)
        {
            Pci.WriteConfig((_address & 0xFC) + (uint)(port - 0xCFC), data);
        }
    }

    public void Dispose() => Memory.Dispose();

    private sealed class Sink(SimpleInterrupts interrupts, int line) : IInterruptSink
    {
        public void SignalMsi(ulong address, uint data) => interrupts.Message(data);

        public void SetIntxLevel(bool asserted) => interrupts.Level(line, asserted);
    }

    // Vectors are just numbers here: MSI data is the vector, a line raises its routed vector
    // while asserted.
    private sealed class SimpleInterrupts : IGuestInterruptController
    {
        private readonly Lock _lock = new();
        private readonly SortedSet<int> _pending = [];
        private readonly Dictionary<int, int> _routes = [];
        private readonly HashSet<int> _asserted = [];
        private Action? _wakeup;

        internal long Messages { get; private set; }

        public MsiMessage ComposeMsi(int vector) => new(0xFEE0_0000, (uint)vector);

        public void RouteLine(int line, int vector)
        {
            lock (_lock)
            {
                _routes[line] = vector;
            }
        }

        public bool TryAcknowledge(out int vector)
        {
            lock (_lock)
            {
                if (_pending.Count == 0)
                {
                    vector = -1;
                    return false;
                }

                vector = _pending.Max;
                _pending.Remove(vector);
                return true;
            }
        }

        public void EndOfInterrupt(int vector)
        {
            Action? wakeup = null;
            lock (_lock)
            {
                foreach ((int line, int routed) in _routes)
                {
                    if (routed == vector && _asserted.Contains(line))
                    {
                        _pending.Add(vector);
                        wakeup = _wakeup;
                    }
                }
            }

            wakeup?.Invoke();
        }

        public void SetWakeup(Action? wakeup)
        {
            lock (_lock)
            {
                _wakeup = wakeup;
            }
        }

        internal void Message(uint data)
        {
            Action? wakeup;
            lock (_lock)
            {
                Messages++;
                _pending.Add((int)(data & 0xFF));
                wakeup = _wakeup;
            }

            wakeup?.Invoke();
        }

        internal void Level(int line, bool asserted)
        {
            Action? wakeup = null;
            lock (_lock)
            {
                if (asserted)
                {
                    _asserted.Add(line);
                    if (_routes.TryGetValue(line, out int vector) && vector >= 0)
                    {
                        _pending.Add(vector);
                        wakeup = _wakeup;
                    }
                }
                else
                {
                    _asserted.Remove(line);
                }
            }

            wakeup?.Invoke();
        }
    }
}
