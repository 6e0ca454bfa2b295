using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace LeaderSidecar.Tests.Safety;

/// <summary>The proxy's faults do what the nemesis relies on, against a loopback echo server.</summary>
public sealed class TcpProxyTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);
    private readonly TcpListener _echo = new(IPAddress.Loopback, 0);
    private readonly List<long> _echoedAt = [];
    private readonly CancellationTokenSource _stop = new();
    private TcpProxy _proxy = null!;

    public Task InitializeAsync()
    {
        _echo.Start();
        _ = EchoAsync();
        _proxy = new TcpProxy(((IPEndPoint)_echo.LocalEndpoint).Port);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _proxy.DisposeAsync();
        await _stop.CancelAsync();
        _echo.Stop();
        _stop.Dispose();
    }

    [Fact]
    public async Task Bytes_go_both_ways_unchanged()
    {
        using var client = await ConnectAsync();

        Assert.Equal("hello", await RoundTripAsync(client, "hello"));
        Assert.Equal("again", await RoundTripAsync(client, "again"));
    }

    [Fact]
    public async Task A_delay_holds_every_chunk_each_way_until_it_is_removed()
    {
        using var client = await ConnectAsync();
        var oneWay = TimeSpan.FromMilliseconds(300);
        var delay = _proxy.Delay(oneWay);

        var took = Stopwatch.StartNew();
        Assert.Equal("slow", await RoundTripAsync(client, "slow"));
        // Less a few milliseconds: .NET timers count whole milliseconds and can fire up to one early
        // by the stopwatch's clock (a CI run measured 599 ms for two 300 ms holds).
        Assert.True(took.Elapsed >= (oneWay * 2) - TimeSpan.FromMilliseconds(10), $"the echo came back after {took.ElapsedMilliseconds} ms, less than the delay both ways");

        delay.Dispose();
        Assert.Equal("fast", await RoundTripAsync(client, "fast"));
    }

    [Fact]
    public async Task Chunks_held_by_a_delay_go_on_at_once_when_it_is_removed()
    {
        using var client = await ConnectAsync();
        var delay = _proxy.Delay(TimeSpan.FromMinutes(5));
        await client.SendAsync("held"u8.ToArray());
        await Poll.UntilAsync(() => Task.FromResult(_proxy.Delayed >= 1), Deadline, "the chunk to reach the proxy");

        delay.Dispose();

        Assert.Equal("held", await ReceiveAsync(client, 4));
    }

    [Fact]
    public async Task A_black_hole_forwards_nothing_until_it_heals_then_everything_in_order()
    {
        using var client = await ConnectAsync();
        Assert.Equal("before", await RoundTripAsync(client, "before"));

        var hole = _proxy.BlackHole();
        using var late = await ConnectAsync();
        await client.SendAsync("held"u8.ToArray());
        await late.SendAsync("new"u8.ToArray());
        await Poll.UntilAsync(() => Task.FromResult(_proxy.Waiting >= 2), Deadline, "both chunks to reach the proxy");
        var healedAt = Stopwatch.GetTimestamp();
        hole.Dispose();

        Assert.Equal("held", await ReceiveAsync(client, 4));
        Assert.Equal("new", await ReceiveAsync(late, 3));
        lock (_echoedAt)
        {
            Assert.All(_echoedAt.Skip(1), at => Assert.True(at >= healedAt, "the store got a chunk before the black hole healed"));
        }
    }

    [Fact]
    public async Task A_reset_aborts_every_connection_and_new_ones_work()
    {
        using var client = await ConnectAsync();
        Assert.Equal("before", await RoundTripAsync(client, "before"));

        _proxy.Reset();

        var buffer = new byte[16];
        var error = await Record.ExceptionAsync(async () =>
        {
            using var deadline = new CancellationTokenSource(Deadline);
            Assert.Equal(0, await client.ReceiveAsync(buffer, SocketFlags.None, deadline.Token));
        });
        Assert.Equal(SocketError.ConnectionReset, Assert.IsType<SocketException>(error).SocketErrorCode);
        using var next = await ConnectAsync();
        Assert.Equal("after", await RoundTripAsync(next, "after"));
    }

    private async Task<Socket> ConnectAsync()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, _proxy.Port));
        return socket;
    }

    private static async Task<string> RoundTripAsync(Socket socket, string text)
    {
        await socket.SendAsync(System.Text.Encoding.ASCII.GetBytes(text));
        return await ReceiveAsync(socket, text.Length);
    }

    private static async Task<string> ReceiveAsync(Socket socket, int length)
    {
        var buffer = new byte[length];
        using var deadline = new CancellationTokenSource(Deadline);
        for (var read = 0; read < length;)
        {
            var got = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, deadline.Token);
            Assert.NotEqual(0, got);
            read += got;
        }

        return System.Text.Encoding.ASCII.GetString(buffer);
    }

    private async Task EchoAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket accepted;
            try
            {
                accepted = await _echo.AcceptSocketAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            _ = Task.Run(async () =>
            {
                using var socket = accepted;
                var buffer = new byte[1024];
                try
                {
                    while (await socket.ReceiveAsync(buffer, SocketFlags.None, _stop.Token) is var read and > 0)
                    {
                        lock (_echoedAt)
                        {
                            _echoedAt.Add(Stopwatch.GetTimestamp());
                        }

                        await socket.SendAsync(buffer.AsMemory(0, read), SocketFlags.None, _stop.Token);
                    }
                }
                catch (Exception e) when (e is OperationCanceledException or SocketException)
                {
                }
            });
        }
    }
}
