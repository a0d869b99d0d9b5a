using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using VirtioPanic.Hosting;

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
    /// logger factory are exported too), the policy service's handled events, one log record
    /// per event, in category <see cref="VirtioPanicTelemetry.EventsCategory"/>, and tracing of the
    /// action spans (<see cref="PolicyServiceMetrics.ActivitySourceName"/>). Add the exporters
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
        Add(builder);
        return builder;
    }

    /// <summary>
    /// Adds VirtioPanic to <c>services.AddOpenTelemetry()</c>, as
    /// <see cref="AddVirtioPanicTelemetry(IOpenTelemetryBuilder)"/> does, and keeps the concrete
    /// builder so that <c>WithMetrics</c> and <c>WithLogging</c> chain on without another <c>using</c>.
    /// </summary>
    /// <param name="builder">The builder <c>AddOpenTelemetry</c> returned.</param>
    /// <returns><paramref name="builder"/>.</returns>
    public static OpenTelemetryBuilder AddVirtioPanicTelemetry(this OpenTelemetryBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        Add(builder);
        return builder;
    }

    private static void Add(IOpenTelemetryBuilder builder)
    {
        builder.WithMetrics(metrics => metrics.AddVirtioPanicInstrumentation());
        builder.WithLogging();
        builder.WithTracing(tracing => tracing.AddSource(PolicyServiceMetrics.ActivitySourceName));
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, HandledEventExporter>());
    }
}
