using System.Net;
using System.Net.Sockets;
using Grpc.Net.Client;
using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Surfaces;
using LeaderSidecar.Surfaces.Grpc;
using LeaderSidecar.Surfaces.Health;
using LeaderSidecar.Surfaces.Http;
using LeaderSidecar.Surfaces.Metrics;
using LeaderSidecar.Tests.Election;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace LeaderSidecar.Tests.Surfaces;

/// <summary>
/// The HTTP and gRPC surfaces in this process, wired as the daemon wires them, over a
/// <see cref="LeadershipState"/> the test publishes to directly (the elector never runs). Lets a
/// test produce any sequence of statuses, as fast as it likes.
/// </summary>
internal sealed class SurfaceHost : IAsyncDisposable
{
    public static readonly ElectionOptions Options = new() { Identity = "me", LeaseName = "app" };

    private readonly WebApplication _app;
    private readonly CancellationTokenSource _stopElector = new();
    private Task _elector = Task.CompletedTask;

    private SurfaceHost(WebApplication app, Uri http, string grpc, TimeProvider time)
    {
        _app = app;
        Time = time;
        HttpAddress = http;
        GrpcAddress = grpc;
    }

    /// <summary>The clock of the surfaces and of the statuses <see cref="Publish"/> makes.</summary>
    public TimeProvider Time { get; }

    public IServiceProvider Services => _app.Services;

    public LeadershipState State => _app.Services.GetRequiredService<LeadershipState>();

    public SidecarMetrics Metrics => _app.Services.GetRequiredService<SidecarMetrics>();

    public Drain Drain => _app.Services.GetRequiredService<Drain>();

    public Uri HttpAddress { get; }

    /// <summary><c>http://127.0.0.1:PORT</c> or <c>unix:/path</c>.</summary>
    public string GrpcAddress { get; }

    /// <param name="unixSocket">Serve gRPC on this unix socket instead of TCP.</param>
    /// <param name="controlToken">The token that lets a TCP client resign (<c>--control-token-file</c>).</param>
    /// <param name="allowTcpControl">Let any TCP client resign (<c>--allow-tcp-control</c>).</param>
    /// <param name="runElector">Campaign on an in-memory lease, so that a resign really steps down; otherwise the test publishes every status.</param>
    /// <param name="time">The surfaces' clock (a fake one lets a test move their timers); the system's by default.</param>
    public static async Task<SurfaceHost> StartAsync(string? unixSocket = null, ControlToken? controlToken = null, bool allowTcpControl = false, bool runElector = false, TimeProvider? time = null)
    {
        // As the daemon does: no inotify instances (a small per-user limit) spent on appsettings.json.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = ["--hostBuilder:reloadConfigOnChange=false"] });
        builder.Logging.ClearProviders();
        ListenOptions? http = null;
        ListenOptions? grpc = null;
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Loopback, 0, options =>
            {
                options.Protocols = HttpProtocols.Http1;
                http = options;
            });
            grpc = GrpcSurface.Listen(kestrel, unixSocket is null ? new ListenAddress(IPAddress.Loopback, 0, null) : new ListenAddress(null, 0, unixSocket));
        });

        time ??= TimeProvider.System;
        var services = builder.Services;
        services.AddSingleton(time);
        services.AddSingleton(Options);
        services.AddSingleton<ILeaseStore, InMemoryLeaseStore>();
        services.AddSingleton(new LeadershipState(Options, time, NullLogger<LeadershipState>.Instance));
        services.AddSingleton<WatchStreams>();
        services.AddSingleton(s => new Drain(TimeSpan.Zero, s.GetRequiredService<LeadershipState>(), s.GetRequiredService<WatchStreams>(), time, NullLogger<Drain>.Instance));
        services.AddSingleton<Probes>();
        services.AddSingleton<SidecarMetrics>();
        services.AddGrpcSurface();
        services.AddRequestLimits();
        ControlAccess.Register(services, controlToken, allowTcpControl);
        services.AddSingleton(s => new LeaderElector(s.GetRequiredService<ILeaseStore>(), Options, s.GetRequiredService<LeadershipState>(), time, NullLogger<LeaderElector>.Instance, s.GetRequiredService<SidecarMetrics>()));

        var app = builder.Build();
        app.UseListenerSeparation();
        app.MapLeadershipEndpoints();
        app.MapGrpcSurface();
        // As in the daemon, where the elector needs them: metrics count from the first status on.
        app.Services.GetRequiredService<SidecarMetrics>();
        await app.StartAsync();

        var httpEndPoint = (IPEndPoint)http!.EndPoint;
        var grpcAddress = grpc!.EndPoint is IPEndPoint ip ? $"http://127.0.0.1:{ip.Port}" : $"unix:{unixSocket}";
        var host = new SurfaceHost(app, new Uri($"http://127.0.0.1:{httpEndPoint.Port}"), grpcAddress, time);
        if (runElector)
        {
            host._elector = app.Services.GetRequiredService<LeaderElector>().RunAsync(host._stopElector.Token);
        }

        return host;
    }

    /// <summary>Publishes a status as the elector would; a leader's claim lasts a minute.</summary>
    public LeadershipStatus Publish(Role role, string holder, long? term = 1, bool observed = true)
    {
        var time = Time;
        var now = time.GetTimestamp();
        return State.Publish(new LeadershipStatus
        {
            Identity = Options.Identity,
            Role = role,
            Holder = holder,
            Term = term,
            LeaseUid = "uid-1",
            LeaseName = Options.LeaseName,
            LeaseNamespace = Options.LeaseNamespace,
            LastObservedAt = observed ? now : null,
            ClaimDeadline = role == Role.Leader ? now + (time.TimestampFrequency * 60) : null,
            ValidUntil = role == Role.Leader ? time.GetUtcNow().AddMinutes(1) : null,
        });
    }

    public GrpcChannel Channel(SocketsHttpHandler? handler = null) => GrpcChannels.For(GrpcAddress, handler);

    public async ValueTask DisposeAsync()
    {
        await _stopElector.CancelAsync();
        await _elector;
        _stopElector.Dispose();
        Drain.Close();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>gRPC channels to a sidecar over TCP (h2c) or a unix socket.</summary>
internal static class GrpcChannels
{
    /// <param name="address"><c>http://HOST:PORT</c> or <c>unix:/path</c>, as the daemon logs it.</param>
    /// <param name="handler">A handler to configure further (for example a small flow-control window).</param>
    public static GrpcChannel For(string address, SocketsHttpHandler? handler = null)
    {
        handler ??= new SocketsHttpHandler();
        if (!address.StartsWith("unix:", StringComparison.Ordinal))
        {
            return GrpcChannel.ForAddress(address, new GrpcChannelOptions { HttpHandler = handler });
        }

        var path = address["unix:".Length..];
        handler.ConnectCallback = async (_, cancellationToken) =>
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        };
        return GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = handler });
    }
}
