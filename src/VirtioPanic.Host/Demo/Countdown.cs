using System.Globalization;
using VirtioPanic.Device;

namespace VirtioPanic.Host.Demo;

// The live watchdog countdown. On a terminal it redraws one status line in place (log lines clear
// it first, see the console template); when output is redirected it prints a line each half second.
internal sealed class Countdown : IAsyncDisposable
{
    private readonly WatchdogDevice _device;
    private readonly bool _interactive;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    internal Countdown(WatchdogDevice device, bool interactive)
    {
        _device = device;
        _interactive = interactive;
        _loop = Task.Run(LoopAsync);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        if (_interactive)
        {
            Console.Write("\r\u001b[K");
        }

        _stop.Dispose();
    }

    internal static string Bar(TimeSpan left, TimeSpan timeout)
    {
        const int Width = 20;
        double fraction = timeout > TimeSpan.Zero ? Math.Clamp(left / timeout, 0, 1) : 0;
        int filled = (int)Math.Round(fraction * Width);
        return string.Create(CultureInfo.InvariantCulture, $"watchdog {new string('#', filled)}{new string('.', Width - filled)} {left.TotalSeconds,4:0.0} s left of {timeout.TotalSeconds:0.0} s");
    }

    private async Task LoopAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(_interactive ? 100 : 500));
        bool shown = false;
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false))
            {
                WatchdogDeviceStatus status = _device.GetStatus();
                if (status is { Armed: true, TimeLeft: TimeSpan left } && !status.Paused)
                {
                    string line = "⏱  " + _device.Id + ": " + Bar(left, status.Timeout);
                    Console.Write(_interactive ? "\r\u001b[K" + line : line + Environment.NewLine);
                    shown = true;
                }
                else if (shown && _interactive)
                {
                    Console.Write("\r\u001b[K");
                    shown = false;
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Demo over.
        }
    }
}
