using Microsoft.Extensions.Time.Testing;
using VirtioPanic.GuestDriver.Kernel;
using VirtioPanic.GuestDriver.Machine;

namespace VirtioPanic.GuestDriver.Tests.Kernel;

public sealed class GuestCpuTests
{
    [Test]
    public void WaitUntil_TimesOutOnTheMachineClock_NotBefore()
    {
        var time = new FakeTimeProvider();
        using var machine = new TestMachine(new TestMachineOptions { Clock = time });
        using GuestKernel guest = GuestKernel.Boot(machine);

        Task<bool> wait = guest.RunAsync(() => guest.Cpu.WaitUntil(() => false, TimeSpan.FromSeconds(10)));
        guest.WaitForQuiescence();
        time.Advance(TimeSpan.FromSeconds(9));
        guest.WaitForQuiescence();
        bool finishedEarly = wait.IsCompleted;
        time.Advance(TimeSpan.FromSeconds(1));
        bool result = guest.Cpu.Join(wait);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(finishedEarly, Is.False);
            Assert.That(result, Is.False);
        }
    }

    [Test]
    public void WaitUntil_InterruptWakesTheGuest_AndItsHandlerRuns()
    {
        var time = new FakeTimeProvider();
        using var machine = new TestMachine(new TestMachineOptions { Clock = time });
        using GuestKernel guest = GuestKernel.Boot(machine);
        int handled = 0;
        int vector = guest.Run(() =>
        {
            int v = guest.Cpu.AllocateVector();
            guest.Cpu.RequestInterrupt(v, () => ++handled > 0);
            return v;
        });

        Task<bool> wait = guest.RunAsync(() => guest.Cpu.WaitUntil(() => handled > 0, TimeSpan.FromSeconds(1)));
        guest.WaitForQuiescence();
        machine.Interrupts.DeliverMessage(InterruptController.MsiAddressBase, (uint)vector);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(guest.Cpu.Join(wait), Is.True);
            Assert.That(guest.Cpu.InterruptsHandled, Is.EqualTo(1));
        }
    }

    [Test]
    public void StartTimer_RunsOnTheVcpuWhenTheMachineClockPassesItsDueTime()
    {
        var time = new FakeTimeProvider();
        using var machine = new TestMachine(new TestMachineOptions { Clock = time });
        using GuestKernel guest = GuestKernel.Boot(machine);
        int ticks = 0;
        bool onVcpu = false;
        using ITimer timer = guest.Run(() => guest.Cpu.StartTimer(() => { ticks++; onVcpu = guest.Cpu.IsCurrent; }, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(2)));

        time.Advance(TimeSpan.FromSeconds(1));
        guest.WaitForQuiescence();
        int afterOne = ticks;
        time.Advance(TimeSpan.FromSeconds(1));
        guest.WaitForQuiescence();
        time.Advance(TimeSpan.FromSeconds(2));
        guest.WaitForQuiescence();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(afterOne, Is.Zero);
            Assert.That(ticks, Is.EqualTo(2));
            Assert.That(onVcpu, Is.True);
        }
    }

    [Test]
    public void Line_NobodyHandlesIt_MaskedAfterAStorm()
    {
        using var machine = new TestMachine();
        using GuestKernel guest = GuestKernel.Boot(machine);
        guest.Run(() => guest.Cpu.RequestLine(9, () => false));

        machine.Interrupts.SetLineLevel(9, asserted: true);
        guest.WaitForQuiescence();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(guest.Cpu.IsLineDisabled(9), Is.True);
            Assert.That(guest.Cpu.SpuriousInterrupts, Is.EqualTo(100));
        }
    }

    [Test]
    public void Invoke_GuestCodeThrows_RethrownToTheHost()
    {
        using var machine = new TestMachine();
        using GuestKernel guest = GuestKernel.Boot(machine);

        Assert.That(() => guest.Run(() => throw new InvalidOperationException("oops")), Throws.InvalidOperationException.With.Message.EqualTo("oops"));
    }

    [Test]
    public void Invoke_GuestNeverFinishes_FailsAfterTheHangTimeout()
    {
        var time = new FakeTimeProvider();
        using var machine = new TestMachine(new TestMachineOptions { Clock = time });
        using GuestKernel guest = GuestKernel.Boot(machine, new GuestKernelOptions { HangTimeout = TimeSpan.FromMilliseconds(200) });

        Assert.That(() => guest.Run(() => guest.Cpu.WaitUntil(() => false, TimeSpan.FromSeconds(1))), Throws.TypeOf<TimeoutException>());
    }
}
