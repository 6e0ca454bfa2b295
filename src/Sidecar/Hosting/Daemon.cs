using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Stores.LocalFile;
using LeaderSidecar.Surfaces.Http;
using LeaderSidecar.Surfaces.LeaderFile;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Logging.Console;

namespace LeaderSidecar.Hosting;

/// <summary>A problem with the configuration found while starting; exits with code 2.</summary>
internal sealed class StartupException(string message) : Exception(message)
{
    public StartupException()
        : this("start-up failed")
    {
    }

    public StartupException(string message, Exception innerException)
        : this(message + ": " + innerException.Message)
    {
    }
}

/// <summary>Wires the core, one lease store and the surfaces into one host, and runs it.</summary>
internal static partial class Daemon
{
    public const string InClusterTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token";

    public static async Task<int> RunAsync(SidecarOptions options, Func<string, string?> environment)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = [],
            ApplicationName = "leader-sidecar",
            ContentRootPath = AppContext.BaseDirectory,
        });

        ConfigureLogging(builder.Logging, options);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(options.HttpAddress.Ip!, options.HttpAddress.Port);
        });

        // Release must finish within the renew deadline; give the host a little more than that.
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = options.RenewDeadline + TimeSpan.FromSeconds(2));

        var time = TimeProvider.System;
        var store = CreateStore(options, environment, time);
        builder.Services.AddSingleton(time);
        builder.Services.AddSingleton(options.Election);
        builder.Services.AddSingleton(store);
        builder.Services.AddSingleton<LeadershipState>();
        builder.Services.AddSingleton(services => new LeaderElector(
            services.GetRequiredService<ILeaseStore>(),
            services.GetRequiredService<ElectionOptions>(),
            services.GetRequiredService<LeadershipState>(),
            time,
            services.GetRequiredService<ILogger<LeaderElector>>()));
        builder.Services.AddHostedService<ElectionService>();
        if (options.LeaderFile is { } leaderFile)
        {
            builder.Services.AddSingleton(services => new LeaderFileFlag(leaderFile, time, services.GetRequiredService<ILogger<LeaderFileFlag>>()));
        }

        await using var app = builder.Build();
        app.MapLeadershipEndpoints();
        if (app.Services.GetService<LeaderFileFlag>() is { } flag)
        {
            if (flag.Prepare() is { } problem)
            {
                throw new StartupException(problem);
            }

            app.Services.GetRequiredService<LeadershipState>().Subscribe(flag.Apply);
        }

        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("LeaderSidecar");
        LogStarting(logger, CommandLine.Version, options.Identity, store.Description, GoDuration.Format(options.LeaseDuration), GoDuration.Format(options.RenewDeadline), GoDuration.Format(options.RetryPeriod));

        try
        {
            await app.StartAsync();
        }
        catch (IOException e)
        {
            throw new StartupException($"cannot listen on {options.HttpAddress} (--http-address): {e.Message}");
        }

        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault() ?? "";
        LogListening(logger, "http", bound);
        await app.WaitForShutdownAsync();
        return Environment.ExitCode;
    }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1859", Justification = "Every backend plugs in here.")]
    private static ILeaseStore CreateStore(SidecarOptions options, Func<string, string?> environment, TimeProvider time)
    {
        var backend = options.Backend;
        if (backend == BackendKind.Auto)
        {
            var inCluster = !string.IsNullOrEmpty(environment("KUBERNETES_SERVICE_HOST")) && File.Exists(InClusterTokenFile);
            backend = inCluster || options.Kubeconfig is not null ? BackendKind.Kubernetes : BackendKind.File;
        }

        if (backend == BackendKind.Kubernetes)
        {
            throw new StartupException(
                "the kubernetes backend is not available in this build yet; use --backend file " +
                "(auto chose kubernetes because of " + (options.Kubeconfig is not null ? "--kubeconfig/$KUBECONFIG)" : "the in-cluster service account)"));
        }

        var store = new FileLeaseStore(options.LeaseDirectory, options.Namespace, options.LeaseName, time);
        if (store.CheckUsable() is { } problem)
        {
            throw new StartupException(problem + " (--lease-dir)");
        }

        if (store.ClaimIdentity(options.Identity) is { } taken)
        {
            store.Dispose();
            throw new StartupException(taken);
        }

        return store;
    }

    private static void ConfigureLogging(ILoggingBuilder logging, SidecarOptions options)
    {
        logging.ClearProviders();
        logging.SetMinimumLevel(options.LogLevel);
        // The framework's own chatter (routing, hosting) is noise in a sidecar's log.
        logging.AddFilter("Microsoft", LogLevel.Warning);
        // Start-up failures are reported as one line by Program, not as the host's stack trace.
        logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.Critical);
        if (options.LogFormat == LogFormat.Json)
        {
            logging.AddJsonConsole(json =>
            {
                json.UseUtcTimestamp = true;
                json.TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss.fff'Z'";
                json.JsonWriterOptions = new() { Indented = false };
            });
        }
        else
        {
            logging.AddSimpleConsole(text =>
            {
                text.SingleLine = true;
                text.UseUtcTimestamp = true;
                text.TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss.fff'Z' ";
                text.ColorBehavior = LoggerColorBehavior.Disabled;
            });
        }
    }

    [LoggerMessage(EventId = 300, EventName = "Starting", Level = LogLevel.Information,
        Message = "leader-sidecar {Version} starting as {Identity} on {Lease}; lease duration {LeaseDuration}, renew deadline {RenewDeadline}, retry period {RetryPeriod}")]
    private static partial void LogStarting(ILogger logger, string version, string identity, string lease, string leaseDuration, string renewDeadline, string retryPeriod);

    [LoggerMessage(EventId = 301, EventName = "Listening", Level = LogLevel.Information,
        Message = "{Surface} surface listening on {Address}")]
    private static partial void LogListening(ILogger logger, string surface, string address);
}
