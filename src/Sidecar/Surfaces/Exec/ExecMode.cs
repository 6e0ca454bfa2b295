using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Surfaces.Metrics;

namespace LeaderSidecar.Surfaces.Exec;

/// <summary>Wiring of exec mode into the host.</summary>
internal static class ExecMode
{
    /// <summary>
    /// Registers <see cref="LeaderCommand"/> as a hosted service when a COMMAND was given. Its
    /// resign is the one gRPC <c>Resign</c> makes; its exit stops the host with COMMAND's code.
    /// </summary>
    public static IServiceCollection AddLeaderCommand(this IServiceCollection services, SidecarOptions options)
    {
        if (options.Exec is not { } exec)
        {
            return services;
        }

        services.AddSingleton(s =>
        {
            var lifetime = s.GetRequiredService<IHostApplicationLifetime>();
            return new LeaderCommand(
                exec,
                Launcher(),
                s.GetRequiredService<LeadershipState>(),
                s.GetRequiredService<TimeProvider>(),
                s.GetRequiredService<ILogger<LeaderCommand>>(),
                s.GetRequiredService<SidecarMetrics>(),
                ExecOptions.ResignHoldOff(options.LeaseDuration),
                // Resolved when called: the drain itself waits for this command.
                resign: (holdOff, ct) => s.GetRequiredService<LeaderElector>().ResignAsync(holdOff, s.GetRequiredService<Drain>().DeliverStepDownAsync, ct),
                exit: code =>
                {
                    Environment.ExitCode = code;
                    lifetime.StopApplication();
                },
                lifetime.ApplicationStopping);
        });
        services.AddHostedService(s => s.GetRequiredService<LeaderCommand>());
        return services;
    }

    /// <summary>
    /// How to run this binary again: its path, and when that is the <c>dotnet</c> host (<c>dotnet
    /// leader-sidecar.dll</c>), the assembly after it.
    /// </summary>
    private static IReadOnlyList<string> Launcher()
    {
        var path = Environment.ProcessPath ?? throw new InvalidOperationException("the path of this binary is unknown");
        return Path.GetFileName(path) == "dotnet" ? [path, Environment.GetCommandLineArgs()[0]] : [path];
    }
}
