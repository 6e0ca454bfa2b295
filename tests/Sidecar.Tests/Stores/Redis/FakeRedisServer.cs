using System.Net;
using System.Net.Sockets;
using System.Text;
using LeaderSidecar.Stores.Redis;

namespace LeaderSidecar.Tests.Stores.Redis;

/// <summary>
/// A loopback TCP server that reads RESP commands and answers each as <see cref="Answer"/> says,
/// for what a real Redis will not do: stay silent on one connection only, or send a hostile
/// answer. Every connection is served until the server is disposed.
/// </summary>
internal sealed class FakeRedisServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Func<IReadOnlyList<string>, byte[]?> _answer;
    private readonly List<Task> _connections = [];
    private readonly Task _accepting;
    private long _bytesSent;

    /// <param name="answer">The bytes to send for a command (its arguments as text), or null to send nothing.</param>
    public FakeRedisServer(Func<IReadOnlyList<string>, byte[]?> answer)
    {
        _answer = answer;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public RedisEndpoint Endpoint => new(false, "127.0.0.1", ((IPEndPoint)_listener.LocalEndpoint).Port, 0, null);

    /// <summary>How many bytes all connections sent so far.</summary>
    public long BytesSent => Interlocked.Read(ref _bytesSent);

    /// <summary>An answer as RESP text.</summary>
    public static byte[] Resp(string text) => Encoding.UTF8.GetBytes(text);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await Task.WhenAll([_accepting, .. _connections]).ContinueWith(_ => { }, TaskScheduler.Default);
        _stop.Dispose();
    }

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                lock (_connections)
                {
                    _connections.Add(ServeAsync(client));
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                var reader = new RespReader(stream);
                while (true)
                {
                    var command = await reader.ReadAsync(_stop.Token);
                    if (_answer([.. command.Items.Select(i => i.Text)]) is { } answer)
                    {
                        await stream.WriteAsync(answer, _stop.Token);
                        Interlocked.Add(ref _bytesSent, answer.Length);
                    }
                }
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
            {
                // The client hung up, or the test is over.
            }
        }
    }
}
