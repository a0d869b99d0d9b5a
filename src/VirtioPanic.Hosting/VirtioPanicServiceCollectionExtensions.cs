using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace VirtioPanic.Hosting;

/// <summary>Registers the VirtioPanic policy service on a .NET Generic Host.</summary>
public static class VirtioPanicServiceCollectionExtensions
{
    /// <summary>
    /// Adds the policy service: <see cref="VirtioPanicOptions"/> bound from the host configuration's
    /// <c>VirtioPanic</c> section (then <paramref name="configure"/>) and validated at start, the
    /// <see cref="PolicyService"/> singleton, and the hosted service that consumes device events.
    /// </summary>
    /// <param name="services">The host's services.</param>
    /// <param name="configure">Changes applied after configuration binding; null for none.</param>
    /// <returns><paramref name="services"/>.</returns>
    /// <remarks>
    /// Uses the registered <see cref="TimeProvider"/> (the system clock when none is),
    /// <see cref="IMeterFactory"/> when registered, and <see cref="ILogger{TCategoryName}"/>.
    /// Attach devices with <see cref="PolicyService.Attach"/>.
    /// </remarks>
    public static IServiceCollection AddVirtioPanic(this IServiceCollection services, Action<VirtioPanicOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddOptions<VirtioPanicOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IConfigureOptions<VirtioPanicOptions>, VirtioPanicOptionsSetup>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<VirtioPanicOptions>, VirtioPanicOptionsValidator>());
        if (configure is not null)
        {
            services.Configure(configure);
        }

        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton(sp => new PolicyService(
            sp.GetRequiredService<IOptions<VirtioPanicOptions>>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetService<ILogger<PolicyService>>(),
            sp.GetService<IMeterFactory>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, VirtioPanicService>(sp => new VirtioPanicService(sp.GetRequiredService<PolicyService>())));
        return services;
    }
}
