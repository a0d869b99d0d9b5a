using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using VirtioPanic.Device;

namespace VirtioPanic.Hosting;

/// <summary>Registers the watchdog device's settings (<see cref="WatchdogDeviceOptions"/>) on a .NET Generic Host.</summary>
public static class WatchdogDeviceServiceCollectionExtensions
{
    /// <summary>The configuration section <see cref="AddWatchdogDeviceOptions"/> binds: <c>Device</c>.</summary>
    public const string SectionName = "Device";

    /// <summary>
    /// Adds <see cref="WatchdogDeviceOptions"/> bound from the host configuration's <c>Device</c>
    /// section (then <paramref name="configure"/>) and validated when the host starts, before any
    /// hosted service (the policy service's journal included) runs.
    /// </summary>
    /// <param name="services">The host's services.</param>
    /// <param name="configure">Changes applied after configuration binding; null for none.</param>
    /// <returns><paramref name="services"/>.</returns>
    /// <remarks>
    /// <para>A key the options do not have (a misspelling such as <c>Device:DefaultTimeot</c>), a
    /// value that does not convert and a value out of range each fail the start with an
    /// <see cref="OptionsValidationException"/>: one failure per key, naming the key, the value and
    /// what is allowed. Keys: <c>DeviceId</c>, <c>Features</c> (names such as
    /// <c>Events, PanicConfig</c>), <c>DefaultTimeout</c>, <c>MinTimeout</c>, <c>MaxTimeout</c>,
    /// <c>ResumeGrace</c>, <c>EventCapacity</c>, <c>StartPaused</c>.</para>
    /// <para>Create the device from <c>IOptions&lt;WatchdogDeviceOptions&gt;.Value</c> after the host started.</para>
    /// </remarks>
    public static IServiceCollection AddWatchdogDeviceOptions(this IServiceCollection services, Action<WatchdogDeviceOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddOptions<WatchdogDeviceOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IConfigureOptions<WatchdogDeviceOptions>, WatchdogDeviceOptionsSetup>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<WatchdogDeviceOptions>, WatchdogDeviceOptionsValidator>());
        if (configure is not null)
        {
            services.Configure(configure);
        }

        return services;
    }
}
