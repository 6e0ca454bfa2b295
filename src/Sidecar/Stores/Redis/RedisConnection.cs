using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using LeaderSidecar.Election;

namespace LeaderSidecar.Stores.Redis;

/// <summary>How to reach and log in to the server: where, the password (never logged), TLS material.</summary>
internal sealed record RedisServerSettings(RedisEndpoint Endpoint, string? Password, X509Certificate2Collection? TrustedRoots, X509Certificate2? ClientCertificate);

/// <summary>
/// One connection to a Redis server, speaking RESP2 (replies in RESP3 are understood too): TCP,
/// optionally TLS, then <c>AUTH</c> and <c>SELECT</c>. It sends commands and reads replies; error
/// replies are values, not exceptions. Any send or receive that does not complete (a failure, a
/// cancellation) leaves the protocol out of step: <see cref="IsBroken"/> says so, and the owner
/// closes the connection.
/// </summary>
internal sealed class RedisConnection : IDisposable
{
    private readonly Socket _socket;
    private readonly Stream _stream;
    private readonly RespReader _reader;
    private readonly string? _password;
    private volatile bool _broken;

    private RedisConnection(Socket socket, Stream stream, string? password, RespLimits? limits)
    {
        _socket = socket;
        _stream = stream;
        _password = password;
        _reader = new RespReader(stream, limits);
    }

    /// <summary>True once a send or receive failed or was cancelled: the connection must not be used again.</summary>
    public bool IsBroken => _broken;

    /// <summary>
    /// Whether an idle connection can take a request. Between requests the server sends nothing,
    /// so anything to read means it closed the connection (it restarted, or dropped idle clients):
    /// better found now, before a write is sent into it, than as a failed write.
    /// </summary>
    public bool IsUsable()
    {
        try
        {
            return !_broken && !_socket.Poll(0, SelectMode.SelectRead);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>Connects and logs in. Failures come out as exceptions for <see cref="RedisFailures"/> (socket, TLS, I/O) or as a <see cref="LeaseStoreException"/> for a refused login.</summary>
    public static async Task<RedisConnection> OpenAsync(RedisServerSettings settings, CancellationToken cancellationToken, RespLimits? limits = null)
    {
        var endpoint = settings.Endpoint;
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Stream? stream = null;
        try
        {
            await socket.ConnectAsync(endpoint.Host, endpoint.Port, cancellationToken);
            stream = new NetworkStream(socket, ownsSocket: true);
            if (endpoint.Tls)
            {
                var tls = new SslStream(stream, leaveInnerStreamOpen: false);
                stream = tls;
                await tls.AuthenticateAsClientAsync(TlsOptions(settings), cancellationToken);
            }

            var connection = new RedisConnection(socket, stream, settings.Password, limits);
            stream = null;
            try
            {
                await connection.LogInAsync(settings, cancellationToken);
                return connection;
            }
            catch
            {
                connection.Dispose();
                throw;
            }
        }
        catch
        {
            stream?.Dispose();
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Sends <paramref name="command"/> and reads its reply.</summary>
    public async Task<RespValue> CallAsync(IReadOnlyList<string> command, CancellationToken cancellationToken)
    {
        await SendAsync(command, cancellationToken);
        return await ReceiveAsync(cancellationToken);
    }

    public async Task SendAsync(IReadOnlyList<string> command, CancellationToken cancellationToken)
    {
        if (_broken)
        {
            throw new IOException("the connection is closed");
        }

        try
        {
            await _stream.WriteAsync(RespCommand.Encode(command), cancellationToken);
            await _stream.FlushAsync(cancellationToken);
        }
        catch
        {
            _broken = true;
            throw;
        }
    }

    /// <summary>The next reply or push message.</summary>
    public async Task<RespValue> ReceiveAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _reader.ReadAsync(cancellationToken);
        }
        catch
        {
            _broken = true;
            throw;
        }
    }

    /// <summary>Error text from the server, with the password blanked should a server or proxy ever echo it.</summary>
    public string Scrub(string text) =>
        _password is { Length: > 0 } password ? text.Replace(password, "***", StringComparison.Ordinal) : text;

    public void Dispose()
    {
        _broken = true;
        _stream.Dispose();
        _socket.Dispose();
    }

    private async Task LogInAsync(RedisServerSettings settings, CancellationToken cancellationToken)
    {
        if (settings.Password is { } password)
        {
            string[] auth = settings.Endpoint.User is { } user ? ["AUTH", user, password] : ["AUTH", password];
            await ExpectOkAsync("log in", auth, cancellationToken);
        }

        if (settings.Endpoint.Database != 0)
        {
            await ExpectOkAsync("select database", ["SELECT", settings.Endpoint.Database.ToString(System.Globalization.CultureInfo.InvariantCulture)], cancellationToken);
        }
    }

    private async Task ExpectOkAsync(string what, string[] command, CancellationToken cancellationToken)
    {
        var reply = await CallAsync(command, cancellationToken);
        if (reply.IsError)
        {
            throw RedisFailures.FromReply(what, RespValue.String(RespKind.Error, System.Text.Encoding.UTF8.GetBytes(Scrub(reply.Text))));
        }
    }

    private static SslClientAuthenticationOptions TlsOptions(RedisServerSettings settings)
    {
        var options = new SslClientAuthenticationOptions { TargetHost = settings.Endpoint.Host };
        if (settings.ClientCertificate is { } certificate)
        {
            options.ClientCertificates = [certificate];
        }

        if (settings.TrustedRoots is { } roots)
        {
            // Only the given CA: the name must match, and the chain must end at one of its certificates.
            options.RemoteCertificateValidationCallback = (_, presented, _, errors) =>
                presented is not null &&
                (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) == SslPolicyErrors.None &&
                StoreFiles.ChainsTo(presented, roots);
        }

        return options;
    }
}
