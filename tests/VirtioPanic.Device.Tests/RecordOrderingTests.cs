using System.Buffers.Binary;
using System.Reflection.Emit;
using System.Reflection;
using VirtioPanic.Device.Queues;
using VirtioPanic.Device.Tests.Rig;
using VirtioPanic.GuestDriver.Rings;
using VirtioPanic.Virtio.Memory;

namespace VirtioPanic.Device.Tests;

// WDT-DEV-36: the device loads a record's state with acquire semantics before it copies the body.
//
// What a test can check here: on x86-64 (where these tests run) loads are not reordered with other
// loads, so no stress test can catch a missing acquire; on ARM64 one could only fail by chance. So
// the first test checks the code itself: the scan's state read goes through the acquire accessor
// (or, on the fallback paths, a full fence), and it happens before the body is copied. It fails
// when the state is read with plain loads. The second checks that the fallback paths (a state at an
// odd address, a state split over two descriptors) still commit.
public sealed class RecordOrderingTests
{
    [Test]
    [Category("Conformance")]
    public void WDT_DEV_36_StateIsLoadedWithAcquireSemantics_BeforeTheBodyIsCopied()
    {
        List<(int Offset, MethodBase Method)> isCommitted = Calls(typeof(EventQueueWorker), "IsCommitted");
        List<(int Offset, MethodBase Method)> scan = Calls(typeof(EventQueueWorker), "ScanHeld");

        int acquire = isCommitted.FindIndex(c => c.Method.DeclaringType == typeof(GuestMemorySlice) && c.Method.Name == nameof(GuestMemorySlice.LoadUInt32Acquire));
        int fence = isCommitted.FindIndex(c => c.Method.DeclaringType == typeof(Interlocked) && c.Method.Name == nameof(Interlocked.MemoryBarrier));
        int gather = isCommitted.FindIndex(c => c.Method.DeclaringType == typeof(ScatterGather) && c.Method.Name == nameof(ScatterGather.Gather));
        int check = scan.FindIndex(c => c.Method.Name == "IsCommitted");
        int consume = scan.FindIndex(c => c.Method.Name == "Consume");
        Assert.Multiple(() =>
        {
            Assert.That(acquire, Is.GreaterThanOrEqualTo(0), "the state is read with GuestMemorySlice.LoadUInt32Acquire");
            Assert.That(gather < 0 || (fence > gather), Is.True, "a state gathered with plain loads is followed by a full fence");
            Assert.That(check, Is.GreaterThanOrEqualTo(0).And.LessThan(consume), "the scan checks the state before it copies the body");
        });
    }

    [Test]
    [Category("Conformance")]
    public void WDT_DEV_36_StateAtAnOddAddressOrSplitOverDescriptors_IsStillSeenCommitted()
    {
        using WatchdogRig rig = WatchdogRig.Started(WatchdogFeatures.Events);
        byte[] odd = RecordSpec.Panic("odd address").ToBytes();
        byte[] split = RecordSpec.Panic("split state").ToBytes();

        ulong oddRecord = rig.Buffer(300) + 1;
        rig.PostChain(1, new DriverBuffer(oddRecord, 256, false), new DriverBuffer(rig.Buffer(8), 8, true));
        ulong head = rig.Buffer(2);
        ulong body = rig.Buffer(300);
        rig.PostChain(1, new DriverBuffer(head, 2, false), new DriverBuffer(body, 256, false), new DriverBuffer(rig.Buffer(8), 8, true));
        rig.Device.Notify(1);
        Assert.That(rig.Device.HeldRecordCount, Is.EqualTo(2), "both held, uncommitted");

        rig.Memory.TryWrite(oddRecord + 4, odd.AsSpan(4));
        rig.Memory.TryWrite(body, split.AsSpan(2));
        Interlocked.MemoryBarrier();
        rig.Memory.TryWrite(oddRecord, odd.AsSpan(0, 4));
        rig.Memory.TryWrite(head, split.AsSpan(0, 2));
        rig.Device.Notify(1);

        Assert.Multiple(() =>
        {
            Assert.That(rig.Drain<GuestPanickedEvent>().Select(e => e.Message), Is.EqualTo(new[] { "odd address", "split state" }));
            Assert.That(rig.Device.HeldRecordCount, Is.Zero);
        });
    }

    // The methods a method's IL calls, in IL order.
    private static List<(int Offset, MethodBase Method)> Calls(Type type, string name)
    {
        MethodInfo method = type.GetMethod(name, BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance)
            ?? throw new InvalidOperationException($"{type.Name}.{name} not found");
        byte[] il = method.GetMethodBody()!.GetILAsByteArray()!;
        var calls = new List<(int, MethodBase)>();
        for (int i = 0; i + 5 <= il.Length; i++)
        {
            if (il[i] != OpCodes.Call.Value && il[i] != OpCodes.Callvirt.Value)
            {
                continue;
            }

            int token = BinaryPrimitives.ReadInt32LittleEndian(il.AsSpan(i + 1));
            if ((token >> 24) is not (0x06 or 0x0A or 0x2B))
            {
                continue;   // not a MethodDef, MemberRef or MethodSpec token: an operand byte of something else
            }

            try
            {
                if (method.Module.ResolveMethod(token, type.GetGenericArguments(), null) is MethodBase callee)
                {
                    calls.Add((i, callee));
                    i += 4;
                }
            }
            catch (ArgumentException)
            {
                // A byte sequence that only looked like a call.
            }
        }

        return calls;
    }
}
