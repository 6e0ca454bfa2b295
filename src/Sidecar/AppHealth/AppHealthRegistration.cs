using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Surfaces.Metrics;

namespace LeaderSidecar.AppHealth;

/// <summary>Wiring of the app health check into the host.</summary>
internal static class AppHealthRegistration
{
    /// <summary>
    /// With <c>--app-health-url</c>: a <see cref="CampaignGate"/> for the elector, closed until the
    /// first check passes, and the check that feeds it. Without: nothing (always fit).
    /// </summary>
    public static IServiceCollection AddAppHealthCheck(this IServiceCollection services, SidecarOptions options)
    {
        if (options.AppHealth is not { } health)
        {
            return services;
        }

        services.AddSingleton(new CampaignGate(open: false, "the app health check has not passed yet"));
        services.AddSingleton(s => new AppHealthCheck(
            health,
            s.GetRequiredService<CampaignGate>(),
            s.GetRequiredService<SidecarMetrics>(),
            s.GetRequiredService<TimeProvider>(),
            s.GetRequiredService<ILogger<AppHealthCheck>>()));
        services.AddHostedService(s => s.GetRequiredService<AppHealthCheck>());
        return services;
    }
}
