using System.Net;
using System.Net.Sockets;
using LeaderSidecar.Hosting;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace LeaderSidecar.Tests.Hosting;

public sealed class LimitedSocketTransportTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);
    private readonly List<IAsyncDisposable> _disposables = [];
    private readonly List<Socket> _clients = [];

    [Fact]
    public async Task A_listener_at_its_limit_refuses_the_next_connection_and_takes_one_again_when_a_place_frees()
    {
        var listener = await BindAsync(new ConnectionLimits { PerListener = 2 });
        var first = await AcceptAsync(listener, await ConnectAsync(listener));
        await AcceptAsync(listener, await ConnectAsync(listener));

        var pending = listener.AcceptAsync().AsTask();
        var third = await ConnectAsync(listener);

        // The listener closes the socket, then counts it: the client can see the close first.
        await Poll.UntilAsync(() => Task.FromResult(IsClosed(third) && ((LimitedListener)listener).Refused == 1), Deadline, "the third connection is refused and counted");
        Assert.Equal(2, ((LimitedListener)listener).Open);
        Assert.False(pending.IsCompleted);

        await first.DisposeAsync();
        Assert.Equal(1, ((LimitedListener)listener).Open);
        await ConnectAsync(listener);
        var fourth = await pending.WaitAsync(Deadline);
        Assert.NotNull(fourth);
        _disposables.Add(fourth);
        Assert.Equal(2, ((LimitedListener)listener).Open);
    }

    [Fact]
    public async Task A_connection_that_would_leave_fewer_descriptors_than_the_reserve_is_refused()
    {
        // A descriptor limit equal to the reserve: every descriptor number is past the ceiling.
        var listener = await BindAsync(new ConnectionLimits { PerListener = 100, DescriptorLimit = ConnectionLimits.Reserve });

        var pending = listener.AcceptAsync().AsTask();
        var client = await ConnectAsync(listener);

        await Poll.UntilAsync(() => Task.FromResult(IsClosed(client) && ((LimitedListener)listener).Refused == 1), Deadline, "the connection is refused and counted");
        Assert.Equal(0, ((LimitedListener)listener).Open);
        Assert.False(pending.IsCompleted);
    }

    private async Task<IConnectionListener> BindAsync(ConnectionLimits limits)
    {
        var transport = new LimitedSocketTransport(Options.Create(new SocketTransportOptions()), limits, TimeProvider.System, NullLoggerFactory.Instance);
        var listener = await transport.BindAsync(new IPEndPoint(IPAddress.Loopback, 0));
        _disposables.Add(listener);
        return listener;
    }

    private async Task<Socket> ConnectAsync(IConnectionListener listener)
    {
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _clients.Add(client);
        try
        {
            await client.ConnectAsync(listener.EndPoint);
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.Shutdown)
        {
            // Refused so fast that the reset (or, seen in a CI run, EPIPE: "Broken pipe") overtook
            // the connect's own completion.
        }

        return client;
    }

    private async Task<ConnectionContext> AcceptAsync(IConnectionListener listener, Socket client)
    {
        var connection = await listener.AcceptAsync().AsTask().WaitAsync(Deadline);
        Assert.NotNull(connection);
        Assert.Equal(client.LocalEndPoint, connection.RemoteEndPoint);
        _disposables.Add(connection);
        return connection;
    }

    /// <summary>True when the other side closed or reset the connection: readable with nothing to read.</summary>
    private static bool IsClosed(Socket socket)
    {
        try
        {
            return !socket.Connected || (socket.Poll(0, SelectMode.SelectRead) && socket.Available == 0);
        }
        catch (SocketException)
        {
            return true;
        }
    }

    public Task InitializeAsync() => Task.CompletedTask;

    // IAsyncLifetime: xunit 2 never calls IAsyncDisposable on a test class.
    public async Task DisposeAsync()
    {
        foreach (var client in _clients)
        {
            client.Dispose();
        }

        foreach (var disposable in Enumerable.Reverse(_disposables))
        {
            await disposable.DisposeAsync();
        }
    }
}
