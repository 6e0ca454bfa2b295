using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace LeaderSidecar.Bench;

/// <summary>
/// A loopback TCP proxy in front of a gRPC server (cleartext HTTP/2, as the daemon speaks to an
/// <c>http://</c> etcd endpoint) that forwards every byte unchanged and counts what the client sends:
/// gRPC calls by method (one per new HTTP/2 stream), gRPC messages, keep-alive pings and
/// connections. One proxy per replica makes the counts per replica, taken on the wire rather than
/// from the daemon's own metrics.
/// </summary>
/// <remarks>
/// The method is read from the <c>:path</c> in the HEADERS frame, where .NET's HTTP/2 client writes
/// it as a literal (no Huffman coding, no dynamic table); a call whose path cannot be read that way
/// is counted as <see cref="Unreadable"/>, so nothing goes uncounted.
/// </remarks>
internal sealed class CountingProxy : IAsyncDisposable
{
    public const string Unreadable = "(path not readable)";
    public const string Messages = "(gRPC messages)";
    public const string Pings = "(HTTP/2 PINGs)";
    public const string Connections = "(TCP connections)";

    private static readonly byte[] Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray();
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly IPEndPoint _target;
    private readonly ConcurrentDictionary<string, long> _counts = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<Task, bool> _connections = new();
    private readonly Task _accepting;

    public CountingProxy(IPEndPoint target)
    {
        _target = target;
        _listener.Start();
        Address = new Uri($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}");
        _accepting = AcceptAsync();
    }

    /// <summary>Where the client connects instead of the server.</summary>
    public Uri Address { get; }

    /// <summary>A copy of the counts so far: method names (such as <c>etcdserverpb.KV/Txn</c>) and the parenthesised totals above.</summary>
    public Dictionary<string, long> Snapshot() => new(_counts);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting;
        await Task.WhenAll(_connections.Keys);
        _stop.Dispose();
    }

    private void Count(string key) => _counts.AddOrUpdate(key, 1, (_, n) => n + 1);

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

            Count(Connections);
            var connection = ServeAsync(client);
            _connections[connection] = true;
            _ = connection.ContinueWith(t => _connections.TryRemove(t, out _), TaskScheduler.Default);
        }
    }

    private async Task ServeAsync(Socket client)
    {
        using var _ = client;
        using var server = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        client.NoDelay = true;
        using var done = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        try
        {
            await server.ConnectAsync(_target, done.Token);
            var parser = new FrameParser(this);
            var up = PumpAsync(client, server, parser, done);
            var down = PumpAsync(server, client, null, done);
            await Task.WhenAny(up, down);
            await done.CancelAsync();
            await Task.WhenAll(up, down);
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException)
        {
            // The server is gone or the run is over: the client sees its connection close.
        }
    }

    private static async Task PumpAsync(Socket from, Socket to, FrameParser? parser, CancellationTokenSource done)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                var read = await from.ReceiveAsync(buffer, SocketFlags.None, done.Token);
                if (read == 0)
                {
                    to.Shutdown(SocketShutdown.Send);
                    return;
                }

                await to.SendAsync(buffer.AsMemory(0, read), SocketFlags.None, done.Token);
                parser?.Feed(buffer.AsSpan(0, read));
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
        finally
        {
            await done.CancelAsync();
        }
    }

    /// <summary>Where a stream is in its gRPC message: prefix bytes read (0-4), the length so far, body bytes still to pass.</summary>
    private readonly record struct MessageState(int PrefixRead, long Length, long BodyLeft);

    /// <summary>Reads the client's side of one HTTP/2 connection frame by frame, as the bytes pass.</summary>
    private sealed class FrameParser(CountingProxy proxy)
    {
        private const byte Data = 0x0, Headers = 0x1, Ping = 0x6, Continuation = 0x9;
        private const byte EndStream = 0x1, Ack = 0x1, EndHeaders = 0x4, Padded = 0x8, Priority = 0x20;
        private const int MaxHeaderBlock = 64 * 1024;

        // Per open stream: how far into the current gRPC message the client is.
        private readonly Dictionary<int, MessageState> _messages = [];
        private readonly byte[] _head = new byte[9];
        private readonly List<byte> _payload = [];
        private readonly List<byte> _headerBlock = [];
        private int _prefaceLeft = Preface.Length;
        private int _headRead;
        private int _payloadLeft;
        private int _lastStream;

        public void Feed(ReadOnlySpan<byte> bytes)
        {
            while (bytes.Length > 0)
            {
                if (_prefaceLeft > 0)
                {
                    var n = Math.Min(_prefaceLeft, bytes.Length);
                    _prefaceLeft -= n;
                    bytes = bytes[n..];
                }
                else if (_headRead < 9)
                {
                    var n = Math.Min(9 - _headRead, bytes.Length);
                    bytes[..n].CopyTo(_head.AsSpan(_headRead));
                    _headRead += n;
                    bytes = bytes[n..];
                    if (_headRead == 9)
                    {
                        _payloadLeft = (_head[0] << 16) | (_head[1] << 8) | _head[2];
                        _payload.Clear();
                        if (_payloadLeft == 0)
                        {
                            Frame();
                        }
                    }
                }
                else
                {
                    var n = Math.Min(_payloadLeft, bytes.Length);
                    _payload.AddRange(bytes[..n]);
                    _payloadLeft -= n;
                    bytes = bytes[n..];
                    if (_payloadLeft == 0)
                    {
                        Frame();
                    }
                }
            }
        }

        private void Frame()
        {
            _headRead = 0;
            var type = _head[3];
            var flags = _head[4];
            var stream = BinaryPrimitives.ReadInt32BigEndian(_head.AsSpan(5)) & 0x7fffffff;
            var payload = Unpadded(type, flags, [.. _payload]);
            switch (type)
            {
                case Headers when stream > _lastStream:
                    // A new stream from the client is a new gRPC call (a client sends no trailers).
                    _lastStream = stream;
                    _messages[stream] = default;
                    _headerBlock.Clear();
                    _headerBlock.AddRange((flags & Priority) != 0 && payload.Length >= 5 ? payload[5..] : payload);
                    if ((flags & EndHeaders) != 0)
                    {
                        Call();
                    }

                    break;
                case Continuation when _headerBlock.Count > 0 && _headerBlock.Count < MaxHeaderBlock:
                    _headerBlock.AddRange(payload);
                    if ((flags & EndHeaders) != 0)
                    {
                        Call();
                    }

                    break;
                case Data when _messages.TryGetValue(stream, out var state):
                    _messages[stream] = Messages(state, payload);
                    if ((flags & EndStream) != 0)
                    {
                        // The client has sent all it will on this call.
                        _messages.Remove(stream);
                    }

                    break;
                case Ping when (flags & Ack) == 0:
                    proxy.Count(Pings);
                    break;
                default:
                    break;
            }
        }

        private void Call()
        {
            proxy.Count(MethodOf([.. _headerBlock]) ?? Unreadable);
            _headerBlock.Clear();
        }

        /// <summary>Counts the gRPC messages that start in this DATA payload (each has a 5-byte prefix: a flag, then the length).</summary>
        private MessageState Messages(MessageState state, ReadOnlySpan<byte> data)
        {
            while (data.Length > 0)
            {
                if (state.BodyLeft > 0)
                {
                    var skip = (int)Math.Min(state.BodyLeft, data.Length);
                    state = state with { BodyLeft = state.BodyLeft - skip };
                    data = data[skip..];
                    continue;
                }

                if (state.PrefixRead == 0)
                {
                    proxy.Count(CountingProxy.Messages);
                }

                var length = state.PrefixRead == 0 ? 0 : (state.Length << 8) | data[0];
                state = state.PrefixRead == 4
                    ? new MessageState(0, 0, length)
                    : new MessageState(state.PrefixRead + 1, length, 0);
                data = data[1..];
            }

            return state;
        }

        private static byte[] Unpadded(byte type, byte flags, byte[] payload)
        {
            if ((type == Data || type == Headers) && (flags & Padded) != 0 && payload.Length > 0)
            {
                var pad = payload[0];
                return pad < payload.Length ? payload[1..^pad] : [];
            }

            return payload;
        }

        /// <summary>The gRPC method in a literal <c>:path</c> ("/pkg.Service/Method" → "pkg.Service/Method"), or null.</summary>
        private static string? MethodOf(byte[] block)
        {
            // A literal value is a length byte (high bit 0: no Huffman) followed by the text.
            for (var i = 1; i < block.Length; i++)
            {
                var length = block[i - 1];
                if (block[i] != (byte)'/' || (length & 0x80) != 0 || length < 4 || i + length > block.Length)
                {
                    continue;
                }

                var text = Encoding.ASCII.GetString(block, i, length);
                var slash = text.IndexOf('/', 1);
                if (slash > 1 && slash < text.Length - 1 && text.All(c => c is > ' ' and < (char)0x7f))
                {
                    return text[1..];
                }
            }

            return null;
        }
    }
}
