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

    [Fact]
    public void A_regular_file_at_the_socket_path_is_left_intact_and_refused()
    {
        var path = _dir.File("grpc.sock");
        File.WriteAllText(path, "precious");

        var problem = GrpcSurface.PrepareUnixSocket(path);

        Assert.Equal($"{path} exists and is not a socket; not replacing it (--grpc-address)", problem);
        Assert.Equal("precious", File.ReadAllText(path));
    }

    [Fact]
    public void A_symbolic_link_at_the_socket_path_is_left_intact_and_refused_even_to_a_stale_socket()
    {
        var target = _dir.File("real.sock");
        using var stale = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        stale.Bind(new UnixDomainSocketEndPoint(target));
        var path = _dir.File("grpc.sock");
        File.CreateSymbolicLink(path, target);
        var dangling = _dir.File("dangling.sock");
        File.CreateSymbolicLink(dangling, _dir.File("nothing"));

        Assert.Equal($"{path} is a symbolic link, not a socket; not replacing it (--grpc-address)", GrpcSurface.PrepareUnixSocket(path));
        Assert.Contains("is a symbolic link", GrpcSurface.PrepareUnixSocket(dangling), StringComparison.Ordinal);
        Assert.Equal(target, new FileInfo(path).LinkTarget);
        Assert.Equal(UnixFileKind.Socket, UnixFileType.Of(target));
    }

    [Fact]
    public void A_directory_at_the_socket_path_is_refused()
    {
        var path = Directory.CreateDirectory(_dir.File("grpc.sock")).FullName;

        Assert.Contains("exists and is not a socket", GrpcSurface.PrepareUnixSocket(path), StringComparison.Ordinal);
        Assert.True(Directory.Exists(path));
        Assert.Equal(UnixFileKind.Missing, UnixFileType.Of(_dir.File("missing")));
        Assert.Equal(UnixFileKind.Missing, UnixFileType.Of(_dir.File("missing/below")));
    }

    public void Dispose() => _dir.Dispose();
}
