using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Logs;
using VirtioPanic.Hosting;

namespace VirtioPanic.OpenTelemetry;

// Turns each handled event of the policy service into one OpenTelemetry log record. Subscribes in
// StartingAsync, which the host calls before any hosted service's StartAsync, so no event the
// service handles after its start is missed; unsubscribes when the host has stopped (the service
// drains its queues in its StopAsync, and those events are exported too).
internal sealed class HandledEventExporter : IHostedLifecycleService
{
    private static readonly Func<IReadOnlyList<KeyValuePair<string, object?>>, Exception?, string> s_body =
        static (state, _) => (string)state[^1].Value!;

    private readonly PolicyService? _service;
    private readonly ILogger? _logger;

    public HandledEventExporter(IServiceProvider services)
    {
        _service = services.GetService<PolicyService>();
        // The OpenTelemetry provider itself, not the host's factory: see AddVirtioPanicTelemetry.
        _logger = services.GetServices<ILoggerProvider>().OfType<OpenTelemetryLoggerProvider>().FirstOrDefault()?.CreateLogger(VirtioPanicTelemetry.EventsCategory);
    }

    public Task StartingAsync(CancellationToken cancellationToken)
    {
        if (_service is not null && _logger is not null)
        {
            _service.EventHandled += OnEventHandled;
        }

        return Task.CompletedTask;
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken)
    {
        if (_service is not null)
        {
            _service.EventHandled -= OnEventHandled;
        }

        return Task.CompletedTask;
    }

    internal static List<KeyValuePair<string, object?>> Attributes(HandledEvent handled)
    {
        var attributes = new List<KeyValuePair<string, object?>>(9)
        {
            new("virtiopanic.device.id", handled.DeviceId),
            new("virtiopanic.event.name", handled.Name),
            new("virtiopanic.event.sequence", handled.Sequence),
            new("virtiopanic.policy.action", handled.PolicyAction),
            new("virtiopanic.outcome", handled.Outcome),
            new("virtiopanic.journaled", handled.Journaled),
        };
        if (handled.Note is { } note)
        {
            attributes.Add(new("virtiopanic.note", note));
        }

        // Last, as the message template: OpenTelemetry makes it the record's body.
        attributes.Add(new("{OriginalFormat}", handled.Json));
        return attributes;
    }

    private void OnEventHandled(object? sender, HandledEvent handled)
    {
        ILogger logger = _logger!;
        LogLevel level = handled.Succeeded ? LogLevel.Information : LogLevel.Error;
        if (!logger.IsEnabled(level))
        {
            return;
        }

        logger.Log(level, new EventId(1, handled.Name), (IReadOnlyList<KeyValuePair<string, object?>>)Attributes(handled), null, s_body);
    }
}
