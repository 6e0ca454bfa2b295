using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;

namespace LeaderSidecar.Tests.Safety;

/// <summary>
/// A loopback TCP proxy between one daemon and its store, for the network faults a real server
/// cannot make for one client: latency (every chunk held a while, each way), a reset (every
/// connection aborted with RST; the daemon reconnects) and a black hole (connections accepted and
/// kept open, nothing forwarded either way until the heal, then everything delivered in order, as
/// TCP does when a partition heals before its retries give up).
/// </summary>
internal sealed class TcpProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly IPEndPoint _upstream;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private readonly HashSet<Link> _links = [];
    private readonly Task _accepting;
    private TaskCompletionSource _open = Opened();
    private long _latencyTicks;
    private CancellationTokenSource _latencyEnded = new();
    private int _waiting;
    private int _delayed;

    public TcpProxy(int upstreamPort)
    {
        _upstream = new IPEndPoint(IPAddress.Loopback, upstreamPort);
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>How many chunks are held by a black hole now.</summary>
    public int Waiting => Volatile.Read(ref _waiting);

    /// <summary>How many chunks are held by a delay now.</summary>
    public int Delayed => Volatile.Read(ref _delayed);

    /// <summary>
    /// Holds every chunk <paramref name="oneWay"/> before forwarding it, each way, until disposed;
    /// then the chunks still held go on at once, so the network is healed the moment the fault is.
    /// </summary>
    public IDisposable Delay(TimeSpan oneWay)
    {
        lock (_gate)
        {
            _latencyTicks = oneWay.Ticks;
        }

        return new Undo(() =>
        {
            CancellationTokenSource ended;
            lock (_gate)
            {
                _latencyTicks = 0;
                ended = _latencyEnded;
                _latencyEnded = new CancellationTokenSource();
            }

            ended.Cancel();
        });
    }

    /// <summary>Forwards nothing, either way, on any connection, until disposed; sockets stay open.</summary>
    public IDisposable BlackHole()
    {
        lock (_gate)
        {
            if (_open.Task.IsCompleted)
            {
                _open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        }

        return new Undo(() =>
        {
            lock (_gate)
            {
                _open.TrySetResult();
            }
        });
    }

    /// <summary>Aborts every open connection with a reset; new ones are accepted as before.</summary>
    public void Reset()
    {
        List<Link> links;
        lock (_gate)
        {
            links = [.. _links];
        }

        foreach (var link in links)
        {
            link.Abort();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        Reset();
        lock (_gate)
        {
            _open.TrySetResult();
        }

        await _accepting;
        _stop.Dispose();
        _latencyEnded.Dispose();
    }

    private static TaskCompletionSource Opened()
    {
        var open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        open.SetResult();
        return open;
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptSocketAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            _ = ServeAsync(client);
        }
    }

    private async Task ServeAsync(Socket client)
    {
        var link = new Link(client, new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        lock (_gate)
        {
            _links.Add(link);
        }

        try
        {
            client.NoDelay = true;
            link.Upstream.NoDelay = true;
            await link.Upstream.ConnectAsync(_upstream, _stop.Token);
            await Task.WhenAll(PumpAsync(link, client, link.Upstream), PumpAsync(link, link.Upstream, client));
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or ObjectDisposedException or ChannelClosedException)
        {
            // The store refused (it is down), a side reset, or the proxy stopped: reset both sides,
            // as a refused or broken connection looks to the daemon.
        }
        finally
        {
            lock (_gate)
            {
                _links.Remove(link);
            }

            link.Abort();
        }
    }

    /// <summary>
    /// Copies <paramref name="from"/> to <paramref name="to"/>: a reader queues each chunk with the
    /// moment it arrived, a writer forwards it once the proxy is open and the latency has passed,
    /// so chunks keep their order and a latency is not paid once per chunk.
    /// </summary>
    private async Task PumpAsync(Link link, Socket from, Socket to)
    {
        var chunks = Channel.CreateUnbounded<(long ArrivedAt, byte[] Data)>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var writing = ForwardAsync(chunks.Reader, to);
        try
        {
            var buffer = new byte[16 * 1024];
            while (true)
            {
                var read = await from.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                if (read == 0)
                {
                    break;
                }

                chunks.Writer.TryWrite((Stopwatch.GetTimestamp(), buffer[..read]));
            }

            chunks.Writer.TryComplete();
            await writing;
            to.Shutdown(SocketShutdown.Send);
        }
        catch
        {
            chunks.Writer.TryComplete();
            link.Abort();
            throw;
        }
    }

    private async Task ForwardAsync(ChannelReader<(long ArrivedAt, byte[] Data)> chunks, Socket to)
    {
        await foreach (var (arrivedAt, data) in chunks.ReadAllAsync(_stop.Token))
        {
            Task open;
            lock (_gate)
            {
                open = _open.Task;
            }

            if (!open.IsCompleted)
            {
                Interlocked.Increment(ref _waiting);
                try
                {
                    await open.WaitAsync(_stop.Token);
                }
                finally
                {
                    Interlocked.Decrement(ref _waiting);
                }
            }

            // A fixed delay per chunk is the fault being injected, not a wait for a condition.
            TimeSpan latency;
            CancellationToken latencyEnded;
            lock (_gate)
            {
                latency = TimeSpan.FromTicks(_latencyTicks);
                latencyEnded = _latencyEnded.Token;
            }

            var wait = latency - Stopwatch.GetElapsedTime(arrivedAt);
            if (wait > TimeSpan.Zero)
            {
                using var held = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token, latencyEnded);
                Interlocked.Increment(ref _delayed);
                try
                {
                    await Task.Delay(wait, held.Token);
                }
                catch (OperationCanceledException) when (latencyEnded.IsCancellationRequested && !_stop.IsCancellationRequested)
                {
                }
                finally
                {
                    Interlocked.Decrement(ref _delayed);
                }
            }

            await to.SendAsync(data, SocketFlags.None, _stop.Token);
        }
    }

    /// <summary>A daemon's connection and the proxy's connection to the store on its behalf.</summary>
    private sealed class Link(Socket client, Socket upstream)
    {
        private int _aborted;

        public Socket Upstream { get; } = upstream;

        /// <summary>Closes both sockets with a reset (linger 0), once.</summary>
        public void Abort()
        {
            if (Interlocked.Exchange(ref _aborted, 1) == 1)
            {
                return;
            }

            foreach (var socket in new[] { client, Upstream })
            {
                try
                {
                    socket.LingerState = new LingerOption(true, 0);
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                }

                socket.Dispose();
            }
        }
    }

    private sealed class Undo(Action undo) : IDisposable
    {
        private Action? _undo = undo;

        public void Dispose() => Interlocked.Exchange(ref _undo, null)?.Invoke();
    }
}
