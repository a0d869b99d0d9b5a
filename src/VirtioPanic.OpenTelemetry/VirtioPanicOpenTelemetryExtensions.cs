using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace VirtioPanic.OpenTelemetry;

/// <summary>Adds VirtioPanic's meters and handled events to an OpenTelemetry set-up.</summary>
public static class VirtioPanicOpenTelemetryExtensions
{
    /// <summary>Adds every VirtioPanic meter (<see cref="VirtioPanicTelemetry.MeterNames"/>) to a meter provider.</summary>
    /// <param name="builder">The meter provider builder.</param>
    /// <returns><paramref name="builder"/>.</returns>
    public static MeterProviderBuilder AddVirtioPanicInstrumentation(this MeterProviderBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddMeter([.. VirtioPanicTelemetry.MeterNames]);
    }

    /// <summary>
    /// Adds VirtioPanic to an OpenTelemetry set-up (<c>services.AddOpenTelemetry()</c>): every
    /// VirtioPanic meter, OpenTelemetry logging (so the libraries' log lines that reach the host's
    /// logger factory are exported too), and the policy service's handled events, one log record
    /// per event, in category <see cref="VirtioPanicTelemetry.EventsCategory"/>. Add the exporters
    /// (OTLP, in-memory...) as usual.
    /// </summary>
    /// <param name="builder">The OpenTelemetry builder.</param>
    /// <returns><paramref name="builder"/>.</returns>
    /// <remarks>
    /// <para>An event record is written straight to the OpenTelemetry logger provider, not through
    /// the host's logger factory, so filters and other providers (the console) neither drop nor
    /// repeat it, and it is not rate-limited: every panic and expiry is exported. Its attributes:
    /// <c>virtiopanic.device.id</c>, <c>virtiopanic.event.name</c>, <c>virtiopanic.event.sequence</c>,
    /// <c>virtiopanic.policy.action</c>, <c>virtiopanic.outcome</c>, <c>virtiopanic.journaled</c>
    /// and, when there is one, <c>virtiopanic.note</c>; its body is the QMP-shaped JSON. Severity
    /// is Error when the last VM-control call failed, else Information.</para>
    /// <para>The records are emitted in <see cref="Hosting.PolicyService.EventHandled"/>, under the
    /// device's gate: the exporters' usual batch processor only queues them (and drops when its
    /// bounded queue is full), so a slow collector never holds up the policy.</para>
    /// </remarks>
    public static IOpenTelemetryBuilder AddVirtioPanicTelemetry(this IOpenTelemetryBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.WithMetrics(metrics => metrics.AddVirtioPanicInstrumentation());
        builder.WithLogging();
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, HandledEventExporter>());
        return builder;
    }
}
