using Microsoft.Extensions.Hosting;

namespace VirtioPanic.Hosting;

// The hosted service: opens the journal at start (failures stop the host from starting), runs the
// device pumps until the host stops, then drains them and closes the journal.
internal sealed class VirtioPanicService : BackgroundService
{
    private readonly PolicyService _service;

    public VirtioPanicService(PolicyService service) => _service = service;

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        _service.Start();
        return base.StartAsync(cancellationToken);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        await _service.StopAsync().ConfigureAwait(false);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await Task.Delay(Timeout.Infinite, stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Host stopping; StopAsync drains.
        }
    }
}
