using System.Net.Sockets;
using Grpc.AspNetCore.Server;
using LeaderSidecar.Configuration;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;

namespace LeaderSidecar.Surfaces.Grpc;

/// <summary>
/// Wiring of the gRPC surface: <c>leadership.v1.Leadership</c> and <c>grpc.health.v1.Health</c>,
/// served h2c (HTTP/2 without TLS) on their own listener, TCP or a unix socket.
/// </summary>
internal static class GrpcSurface
{
    public static IServiceCollection AddGrpcSurface(this IServiceCollection services)
    {
        services.AddGrpc();
        services.AddSingleton<LeadershipService>();
        services.AddSingleton<HealthService>();

        // A unix socket is made owner-only between bind and listen, so no other user can ever
        // connect to it (a chmod after listen would leave a window).
        services.Configure<SocketTransportOptions>(sockets => sockets.CreateBoundListenSocket = endpoint =>
        {
            var socket = SocketTransportOptions.CreateDefaultBoundListenSocket(endpoint);
            if (!OperatingSystem.IsWindows() && endpoint is UnixDomainSocketEndPoint unix && unix.ToString() is { Length: > 0 } path)
            {
                File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }

            return socket;
        });
        return services;
    }

    public static void MapGrpcSurface(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGrpcService<LeadershipService>();
        endpoints.MapGrpcService<HealthService>();
    }

    /// <summary>Adds the HTTP/2-only listener for <paramref name="address"/> and returns it (it learns its bound port).</summary>
    public static ListenOptions Listen(KestrelServerOptions kestrel, ListenAddress address)
    {
        ListenOptions? listener = null;
        void Configure(ListenOptions options)
        {
            options.Protocols = HttpProtocols.Http2;
            listener = options;
        }

        if (address.UnixSocketPath is { } path)
        {
            kestrel.ListenUnixSocket(path, Configure);
        }
        else
        {
            kestrel.Listen(address.Ip!, address.Port, Configure);
        }

        return listener!;
    }

    /// <summary>
    /// Each listener serves only its own surface: gRPC only over HTTP/2 (the gRPC listener), the
    /// HTTP endpoints only over HTTP/1.x (the HTTP listener), and on the probe listener only the
    /// probes and metrics. Anything else is 404.
    /// </summary>
    public static void UseListenerSeparation(this IApplicationBuilder app) =>
        app.Use((context, next) =>
        {
            var isGrpc = context.GetEndpoint()?.Metadata.GetMetadata<GrpcMethodMetadata>() is not null;
            if (isGrpc != HttpProtocol.IsHttp2(context.Request.Protocol) || Http.HttpSurface.IsOutsideProbeListener(context))
            {
                context.Response.StatusCode = StatusCodes.Status404NotFound;
                return Task.CompletedTask;
            }

            return next(context);
        });

    /// <summary>
    /// Makes <paramref name="path"/> free for a new socket: a socket left by an earlier run (nobody
    /// accepts connections on it) is removed; a socket another process serves is a start-up error,
    /// and so is anything else at the path (a file, a symbolic link): it is not ours to delete.
    /// </summary>
    /// <returns><see langword="null"/> when usable, else one line naming the problem.</returns>
    public static string? PrepareUnixSocket(string path)
    {
        var directory = Path.GetDirectoryName(path);
        if (directory is null || !Directory.Exists(directory))
        {
            return $"unix socket directory {directory} does not exist (--grpc-address)";
        }

        switch (UnixFileType.Of(path))
        {
            case UnixFileKind.Missing:
                return null;
            case UnixFileKind.Socket:
                break;
            case UnixFileKind.SymbolicLink:
                return $"{path} is a symbolic link, not a socket; not replacing it (--grpc-address)";
            case UnixFileKind.Other:
                return $"{path} exists and is not a socket; not replacing it (--grpc-address)";
            default:
                return $"{path} exists and cannot be told to be a stale socket; remove it if it is one (--grpc-address)";
        }

        try
        {
            using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return $"another process serves the unix socket {path} (--grpc-address)";
        }
        catch (SocketException)
        {
            // Nobody listens: a stale socket from a process that did not clean up.
        }

        // Between the check and here only someone who may write the directory could swap the
        // socket for another file, and unlink removes a link, never what it points to.
        try
        {
            File.Delete(path);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"cannot remove the stale unix socket {path}: {e.Message} (--grpc-address)";
        }
    }
}
