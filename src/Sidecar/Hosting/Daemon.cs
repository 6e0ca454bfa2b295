using LeaderSidecar.AppHealth;
using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Stores;
using LeaderSidecar.Surfaces;
using LeaderSidecar.Surfaces.Exec;
using LeaderSidecar.Surfaces.Grpc;
using LeaderSidecar.Surfaces.Health;
using LeaderSidecar.Surfaces.Http;
using LeaderSidecar.Surfaces.LeaderFile;
using LeaderSidecar.Surfaces.Metrics;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
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
    public static async Task<int> RunAsync(SidecarOptions options, Func<string, string?> environment)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            // Configuration comes from our flags only. Without this the host watches appsettings
            // files with inotify, and a host out of inotify instances would fail the start.
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
            ApplicationName = "leader-sidecar",
            ContentRootPath = AppContext.BaseDirectory,
        });

        ConfigureLogging(builder.Logging, options);
        ListenOptions? httpListener = null, grpcListener = null, probeListener = null;
        var connectionLimits = ConnectionLimits.ForThisProcess(listeners: options.ProbeAddress is null ? 2 : 3);
        builder.Services.AddSingleton(connectionLimits);
        // Registered after Kestrel's socket transport, so Kestrel binds with this one.
        builder.Services.AddSingleton<IConnectionListenerFactory, LimitedSocketTransport>();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            connectionLimits.Apply(kestrel);
            httpListener = HttpSurface.Listen(kestrel, options.HttpAddress, probesOnly: false);
            grpcListener = GrpcSurface.Listen(kestrel, options.GrpcAddress);
            if (options.ProbeAddress is { } probe)
            {
                probeListener = HttpSurface.Listen(kestrel, probe, probesOnly: true);
            }
        });

        // Stopping COMMAND, the drain and then the release (bounded by the renew deadline) must finish
        // before the host gives up on stopping; give it a little more than all.
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = (options.Exec?.Grace ?? TimeSpan.Zero) + options.DrainTimeout + options.RenewDeadline + TimeSpan.FromSeconds(2));

        var time = TimeProvider.System;
        StoreKinds.Select(options, environment).Register(builder.Services, options, environment, time);
        builder.Services.AddSingleton(time);
        builder.Services.AddSingleton(options.Election);
        builder.Services.AddSingleton<LeadershipState>();
        builder.Services.AddSingleton<WatchStreams>();
        builder.Services.AddSingleton(services => new Drain(
            options.DrainTimeout,
            services.GetRequiredService<LeadershipState>(),
            services.GetRequiredService<WatchStreams>(),
            time,
            services.GetRequiredService<ILogger<Drain>>(),
            services.GetService<LeaderFileFlag>(),
            services.GetService<LeaderCommand>()));
        builder.Services.AddSingleton<Probes>();
        builder.Services.AddSingleton<SidecarMetrics>();
        builder.Services.AddGrpcSurface();
        builder.Services.AddRequestLimits();
        ControlAccess.Register(builder.Services, options.ControlToken, options.AllowTcpControl);
        builder.Services.AddAppHealthCheck(options);
        builder.Services.AddSingleton(services => new LeaderElector(
            services.GetRequiredService<ILeaseStore>(),
            services.GetRequiredService<ElectionOptions>(),
            services.GetRequiredService<LeadershipState>(),
            time,
            services.GetRequiredService<ILogger<LeaderElector>>(),
            services.GetRequiredService<SidecarMetrics>(),
            services.GetService<CampaignGate>(),
            // Standing aside ends the leader's work and tells every watcher first, as a Resign does.
            ct => services.GetRequiredService<Drain>().DeliverStepDownAsync(ct)));
        builder.Services.AddHostedService<ElectionService>();
        builder.Services.AddLeaderCommand(options);
        if (options.LeaderFile is { } leaderFile)
        {
            builder.Services.AddSingleton(services => new LeaderFileFlag(leaderFile, time, services.GetRequiredService<ILogger<LeaderFileFlag>>()));
        }

        await using var app = builder.Build();
        app.UseListenerSeparation();
        app.MapLeadershipEndpoints();
        app.MapGrpcSurface();
        if (options.GrpcAddress.UnixSocketPath is { } socket && GrpcSurface.PrepareUnixSocket(socket) is { } socketProblem)
        {
            throw new StartupException(socketProblem);
        }
        if (app.Services.GetService<LeaderFileFlag>() is { } flag)
        {
            if (flag.Prepare() is { } problem)
            {
                throw new StartupException(problem);
            }

            app.Services.GetRequiredService<LeadershipState>().Subscribe(flag.Apply);
        }

        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("LeaderSidecar");
        var leaseStore = app.Services.GetRequiredService<ILeaseStore>();
        LogStarting(logger, CommandLine.Version, options.Identity, leaseStore.Description, GoDuration.Format(options.LeaseDuration), GoDuration.Format(options.RenewDeadline), GoDuration.Format(options.RetryPeriod));
        LogConnectionLimits(logger, connectionLimits);
        if (!options.Campaign)
        {
            LogNotCampaigning(logger);
        }

        await CheckAccessAsync(leaseStore, options, logger);

        try
        {
            await app.StartAsync();
        }
        catch (IOException e)
        {
            // Kestrel names the address it could not bind ("...address http://127.0.0.1:4041: ...").
            var (name, address) = Named(options.GrpcAddress) ? ("grpc-address", options.GrpcAddress)
                : options.ProbeAddress is { } probe && Named(probe) ? ("probe-address", probe)
                : ("http-address", options.HttpAddress);
            throw new StartupException($"cannot listen on {address} (--{name}): {e.Message}");

            bool Named(ListenAddress candidate) => e.Message.Contains(candidate + ":", StringComparison.Ordinal);
        }

        LogListening(logger, "http", Bound(httpListener, options.HttpAddress));
        LogListening(logger, "grpc", Bound(grpcListener, options.GrpcAddress));
        if (options.ProbeAddress is { } probeAddress)
        {
            LogListening(logger, "probe", Bound(probeListener, probeAddress));
        }

        // Start-up's garbage (flags, the container, Kestrel's and gRPC's setup) is never needed
        // again: one compacting collection hands its pages back to the system now, so an idle
        // daemon's resident memory is what it uses rather than what it once allocated.
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        await app.WaitForShutdownAsync();
        return Environment.ExitCode;
    }

    /// <summary>Where a listener is bound, with the port the system picked for port 0.</summary>
    private static string Bound(ListenOptions? listener, ListenAddress configured) =>
        listener is { EndPoint: System.Net.IPEndPoint ip } ? $"http://{new ListenAddress(ip.Address, ip.Port, null)}" : configured.ToString();

    /// <summary>
    /// One read of the lease before campaigning, so credentials that are rejected (401) or an
    /// account that may not read the lease (403) stop the start with one clear line. Anything
    /// else (the API server is down, slow) is a runtime problem: logged, retried with backoff.
    /// </summary>
    private static async Task CheckAccessAsync(ILeaseStore store, SidecarOptions options, ILogger logger)
    {
        using var timeout = new CancellationTokenSource(options.Election.RequestTimeout);
        try
        {
            await store.GetAsync(timeout.Token);
        }
        catch (LeaseStoreException e) when (e.Reason is LeaseStoreFailure.Unauthorized or LeaseStoreFailure.Forbidden)
        {
            throw new StartupException($"{store.Description}: {(e.Reason == LeaseStoreFailure.Forbidden ? "access denied" : "credentials rejected")}: {e.Message}");
        }
        catch (Exception e) when (e is LeaseStoreException or OperationCanceledException)
        {
            LogFirstReadFailed(logger, e.Message);
        }
    }

    private static void ConfigureLogging(ILoggingBuilder logging, SidecarOptions options)
    {
        logging.ClearProviders();
        logging.SetMinimumLevel(options.LogLevel);
        // The framework's own chatter (routing, hosting) is noise in a sidecar's log.
        logging.AddFilter("Microsoft", LogLevel.Warning);
        logging.AddFilter("Grpc", LogLevel.Warning);
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

    [LoggerMessage(EventId = 303, EventName = "NotCampaigning", Level = LogLevel.Information,
        Message = "Observing only (--campaign=false): this replica reports the holder and never leads")]
    private static partial void LogNotCampaigning(ILogger logger);

    [LoggerMessage(EventId = 302, EventName = "FirstReadFailed", Level = LogLevel.Warning,
        Message = "First read of the lease failed ({Reason}); campaigning anyway, with retries")]
    private static partial void LogFirstReadFailed(ILogger logger, string reason);

    private static void LogConnectionLimits(ILogger logger, ConnectionLimits limits)
    {
        var descriptorLimit = limits.DescriptorLimit?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown";
        var open = limits.OpenAtStart?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown";
        if (limits.Starved)
        {
            LogFewDescriptors(logger, descriptorLimit, open, limits.PerListener);
        }
        else
        {
            LogDescriptors(logger, descriptorLimit, open, limits.PerListener);
        }
    }

    [LoggerMessage(EventId = 322, EventName = "ConnectionLimits", Level = LogLevel.Debug,
        Message = "File descriptor limit {DescriptorLimit}, {Open} open at start; each listener holds at most {PerListener} connections")]
    private static partial void LogDescriptors(ILogger logger, string descriptorLimit, string open, int perListener);

    [LoggerMessage(EventId = 323, EventName = "FewDescriptors", Level = LogLevel.Warning,
        Message = "File descriptor limit {DescriptorLimit} with {Open} open at start leaves too few for the listeners; each holds at most {PerListener} connections, and a flood of them may starve the lease store (raise the limit, ulimit -n)")]
    private static partial void LogFewDescriptors(ILogger logger, string descriptorLimit, string open, int perListener);

    [LoggerMessage(EventId = 301, EventName = "Listening", Level = LogLevel.Information,
        Message = "{Surface} surface listening on {Address}")]
    private static partial void LogListening(ILogger logger, string surface, string address);
}
