using System.Net.Sockets;
using Leadership.V1;
using LeaderSidecar.Surfaces.Grpc;

namespace LeaderSidecar.Tests.Surfaces.Grpc;

public sealed class UnixSocketTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task The_socket_is_owner_only_and_serves_the_leadership_service()
    {
        var path = _dir.File("grpc.sock");
        await using var host = await SurfaceHost.StartAsync(unixSocket: path);

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        using var channel = host.Channel();
        var status = await new Leadership.V1.Leadership.LeadershipClient(channel).GetStatusAsync(new GetStatusRequest());
        Assert.Equal("me", status.Identity);
    }

    [Fact]
    public void A_stale_socket_is_removed_and_a_live_one_is_refused()
    {
        var path = _dir.File("grpc.sock");
        // Bound but not accepting: to a client, the same as a socket file a killed process left.
        // (Disposing it would unlink the file.)
        using var stale = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        stale.Bind(new UnixDomainSocketEndPoint(path));

        Assert.True(File.Exists(path));
        Assert.Null(GrpcSurface.PrepareUnixSocket(path));
        Assert.False(File.Exists(path));

        using var live = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        live.Bind(new UnixDomainSocketEndPoint(path));
        live.Listen();
        Assert.Contains("another process serves", GrpcSurface.PrepareUnixSocket(path), StringComparison.Ordinal);
        Assert.Contains("does not exist", GrpcSurface.PrepareUnixSocket(_dir.File("missing/grpc.sock")), StringComparison.Ordinal);
    }

    public void Dispose() => _dir.Dispose();
}
