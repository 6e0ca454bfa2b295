using System.Net.Http;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using LeaderSidecar.Election;
using LeaderSidecar.Stores.Etcd.Protocol;

namespace LeaderSidecar.Stores.Etcd;

/// <summary>
/// gRPC channels to one or more etcd members, with failover, optional user/password auth and TLS.
/// One member is current; a request that finds it unavailable, or that is cancelled before it
/// answers, moves to the next. Reads then try
/// the next member at once; a write does so only when it never left this process (the connection
/// was refused), because a write that reached a member may have been applied there.
/// </summary>
internal sealed partial class EtcdConnection : IDisposable
{
    /// <summary>
    /// The largest gRPC message accepted. etcd refuses requests over 1.5 MiB by default, so no value
    /// is larger; the limit bounds what a broken or hostile member can make us buffer.
    /// </summary>
    public const int MaxMessageBytes = 2 * 1024 * 1024;

    private readonly Uri[] _endpoints;
    private readonly GrpcChannel[] _channels;
    private readonly string? _user;
    private readonly string? _password;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();

    // Simple tokens are kept by the member that issued them, so each member has its own.
    private readonly string?[] _tokens;
    private int _current;

    // Why the last member certificate was refused: the handshake's own error only says that it was.
    private volatile string? _refusedCertificate;

    public EtcdConnection(IReadOnlyList<Uri> endpoints, string? user, string? password, X509Certificate2Collection? trustedRoots, X509Certificate2? clientCertificate, ILogger logger)
    {
        ArgumentOutOfRangeException.ThrowIfZero(endpoints.Count);
        _endpoints = [.. endpoints];
        _user = user;
        _password = password;
        _logger = logger;
        _tokens = new string?[_endpoints.Length];
        _channels = [.. _endpoints.Select(e => GrpcChannel.ForAddress(e, new GrpcChannelOptions
        {
            HttpHandler = Handler(trustedRoots, clientCertificate, reason => _refusedCertificate = reason),
            DisposeHttpClient = true,
            MaxReceiveMessageSize = MaxMessageBytes,
            ThrowOperationCanceledOnCancellation = true,
        }))];
        Address = string.Join(',', _endpoints.Select(e => e.GetLeftPart(UriPartial.Authority)));
    }

    /// <summary>The endpoints, for logs (they never carry credentials).</summary>
    public string Address { get; }

    /// <summary>
    /// Runs <paramref name="call"/> on the current member with its credentials; an unavailable
    /// member moves the connection to the next one (see the class remarks for when the same call
    /// is retried there). Failures come out as <see cref="LeaseStoreException"/>, cancellation of
    /// <paramref name="cancellationToken"/> as <see cref="OperationCanceledException"/>.
    /// </summary>
    public async Task<T> CallAsync<T>(string what, bool idempotent, Func<CallInvoker, Metadata, CancellationToken, Task<T>> call, CancellationToken cancellationToken)
    {
        var reauthenticated = false;
        for (var attempt = 1; ; attempt++)
        {
            var index = Volatile.Read(ref _current);
            try
            {
                var headers = await HeadersAsync(index, cancellationToken);
                return await call(_channels[index].CreateCallInvoker(), headers, cancellationToken);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Unauthenticated && _user is not null && !reauthenticated)
            {
                // The member forgot our token (it expired, or the member restarted): log in again once.
                reauthenticated = true;
                LogTokenRejected(_logger, Endpoint(index));
                lock (_gate)
                {
                    _tokens[index] = null;
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // The caller gave up on a member that did not answer in time (hung, or cut off
                // without a reset): the next request tries another one.
                var next = MoveOn(index);
                if (next != index)
                {
                    LogMemberUnavailable(_logger, Endpoint(index), Endpoint(next), "no answer before the request was cancelled");
                }

                throw;
            }
            catch (Exception e) when (IsUnavailable(e))
            {
                var next = MoveOn(index);
                var retry = (idempotent || NeverSent(e)) && attempt < _endpoints.Length;
                var refused = RefusedCertificate(e);
                LogMemberUnavailable(_logger, Endpoint(index), Endpoint(next), refused ?? Message(e));
                if (!retry)
                {
                    throw refused is null
                        ? Failure(what, e, cancellationToken)!
                        : new LeaseStoreException(LeaseStoreFailure.Unavailable, $"{what}: {refused}", e);
                }
            }
            catch (Exception e) when (Failure(what, e, cancellationToken) is { } failure)
            {
                throw failure;
            }
        }
    }

    public void Dispose()
    {
        foreach (var channel in _channels)
        {
            channel.Dispose();
        }
    }

    /// <summary>Turns a client exception into a <see cref="LeaseStoreException"/>; null lets it through as it is.</summary>
    internal static LeaseStoreException? Failure(string what, Exception e, CancellationToken cancellationToken) => e switch
    {
        OperationCanceledException when cancellationToken.IsCancellationRequested => null,
        LeaseStoreException => null,
        RpcException rpc => FromStatus(what, IsTransportFailure(e) ? StatusCode.Unavailable : rpc.StatusCode, rpc.Status.Detail, e),
        HttpRequestException or IOException => new LeaseStoreException(LeaseStoreFailure.Unavailable, $"{what}: etcd unreachable: {e.Message}", e),
        OperationCanceledException => new LeaseStoreException(LeaseStoreFailure.Timeout, $"{what} timed out", e),
        _ => new LeaseStoreException(LeaseStoreFailure.Unavailable, $"{what}: {e.GetType().Name}: {e.Message}", e),
    };

    /// <summary>etcd's gRPC errors (rpctypes) by their status code, with their detail text shortened.</summary>
    internal static LeaseStoreException FromStatus(string what, StatusCode code, string detail, Exception? inner = null)
    {
        var reason = code switch
        {
            StatusCode.Unavailable => LeaseStoreFailure.Unavailable,
            StatusCode.DeadlineExceeded or StatusCode.Cancelled => LeaseStoreFailure.Timeout,
            StatusCode.Unauthenticated => LeaseStoreFailure.Unauthorized,
            StatusCode.PermissionDenied => LeaseStoreFailure.Forbidden,

            // "authentication failed, invalid user ID or password", "user name is empty"
            // (auth is on and we sent no token): both are credentials that cannot work.
            StatusCode.InvalidArgument when detail.Contains("auth", StringComparison.Ordinal) || detail.Contains("user name", StringComparison.Ordinal) => LeaseStoreFailure.Unauthorized,

            // Our receive limit (an oversized answer) and etcd's "too many requests" share a code.
            StatusCode.ResourceExhausted when detail.Contains("too many requests", StringComparison.Ordinal) => LeaseStoreFailure.Throttled,
            StatusCode.ResourceExhausted => LeaseStoreFailure.Invalid,
            StatusCode.InvalidArgument or StatusCode.OutOfRange or StatusCode.FailedPrecondition => LeaseStoreFailure.Invalid,
            _ => LeaseStoreFailure.ServerError,
        };
        return new LeaseStoreException(reason, $"{what}: etcd answered {code}: {Shorten(detail)}", inner);
    }

    /// <summary>Server-provided text as it may appear in a log: bounded, on one line.</summary>
    internal static string Shorten(string text) => Kubernetes.KubernetesLeaseStore.Shorten(text);

    private static bool IsUnavailable(Exception e) =>
        e is RpcException { StatusCode: StatusCode.Unavailable } || IsTransportFailure(e) || e is HttpRequestException or IOException;

    /// <summary>
    /// The connection failed under a call (a keep-alive ping went unanswered, the stream was
    /// reset): gRPC reports that as Internal, but it is the member that is unreachable.
    /// </summary>
    private static bool IsTransportFailure(Exception e) =>
        e is RpcException { StatusCode: StatusCode.Internal, Status.DebugException: HttpRequestException or IOException };

    /// <summary>True when the request never reached a member: the connection itself failed.</summary>
    private static bool NeverSent(Exception e)
    {
        // The channel connects its own sockets: a refused connect arrives as the SocketException itself.
        var cause = e is RpcException rpc ? rpc.Status.DebugException : e;
        if (cause is SocketException)
        {
            return true;
        }

        for (var inner = cause; inner is not null; inner = inner.InnerException)
        {
            if (inner is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError or HttpRequestError.SecureConnectionError })
            {
                return true;
            }
        }

        return false;
    }

    private static string Message(Exception e) => Shorten(e is RpcException rpc ? $"{rpc.StatusCode}: {rpc.Status.Detail}" : e.Message);

    /// <summary>What our certificate check found, when <paramref name="e"/> is the handshake failure it caused.</summary>
    private string? RefusedCertificate(Exception e)
    {
        for (var inner = e is RpcException rpc ? rpc.Status.DebugException : e; inner is not null; inner = inner.InnerException)
        {
            if (inner is AuthenticationException && _refusedCertificate is { } reason)
            {
                return $"TLS handshake with etcd failed: {reason}";
            }
        }

        return null;
    }

    private int MoveOn(int index)
    {
        var next = (index + 1) % _endpoints.Length;
        Interlocked.CompareExchange(ref _current, next, index);
        return next;
    }

    private string Endpoint(int index) => _endpoints[index].GetLeftPart(UriPartial.Authority);

    /// <summary>The metadata of every call to member <paramref name="index"/>: its auth token, once logged in.</summary>
    private async Task<Metadata> HeadersAsync(int index, CancellationToken cancellationToken)
    {
        var headers = new Metadata();
        if (_user is null)
        {
            return headers;
        }

        string? token;
        lock (_gate)
        {
            token = _tokens[index];
        }

        if (token is null)
        {
            var client = new Auth.AuthClient(_channels[index]);
            try
            {
                var answer = await client.AuthenticateAsync(new AuthenticateRequest { Name = _user, Password = _password ?? "" }, cancellationToken: cancellationToken);
                token = answer.Token;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.FailedPrecondition && e.Status.Detail.Contains("not enabled", StringComparison.Ordinal))
            {
                // Auth is off on this cluster: every request is allowed without a token.
                token = "";
            }

            lock (_gate)
            {
                _tokens[index] = token;
            }
        }

        if (token.Length > 0)
        {
            headers.Add("token", token);
        }

        return headers;
    }

    /// <param name="refused">Told why a member's certificate was refused (null once one is accepted).</param>
    private static SocketsHttpHandler Handler(X509Certificate2Collection? trustedRoots, X509Certificate2? clientCertificate, Action<string?> refused)
    {
        var handler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,

            // A member that vanished (power loss, a cut network) sends no reset: pings find out,
            // so a quiet watch on a dead connection ends instead of waiting forever.
            KeepAlivePingDelay = TimeSpan.FromSeconds(10),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
        };
        if (trustedRoots is not null)
        {
            handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
            {
                var problem = CertificateProblem(certificate, errors, trustedRoots);
                refused(problem);
                return problem is null;
            };
        }

        if (clientCertificate is not null)
        {
            handler.SslOptions.ClientCertificates = [clientCertificate];
        }

        return handler;
    }

    /// <summary>
    /// Why a member's certificate is not accepted, in words for the log (no apostrophes: JSON logs
    /// would escape them); null when it is accepted.
    /// </summary>
    private static string? CertificateProblem(X509Certificate? certificate, SslPolicyErrors errors, X509Certificate2Collection roots) =>
        certificate is null ? "the member presented no certificate"
        : (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0 ? $"the certificate of the member ({Shorten(certificate.Subject)}) is not issued for the host name of the endpoint"
        : (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != SslPolicyErrors.None ? $"the certificate of the member was refused ({errors})"
        : !ChainsTo(certificate, roots) ? $"the certificate of the member ({Shorten(certificate.Subject)}, issued by {Shorten(certificate.Issuer)}) is not signed by a CA in --etcd-ca"
        : null;

    /// <summary>True when <paramref name="certificate"/> chains to one of <paramref name="roots"/> (and only those).</summary>
    private static bool ChainsTo(X509Certificate certificate, X509Certificate2Collection roots)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return chain.Build(leaf);
    }

    [LoggerMessage(EventId = 700, EventName = "EtcdMemberUnavailable", Level = LogLevel.Warning,
        Message = "etcd member {Endpoint} unavailable ({Reason}); next request goes to {Next}")]
    private static partial void LogMemberUnavailable(ILogger logger, string endpoint, string next, string reason);

    [LoggerMessage(EventId = 701, EventName = "EtcdTokenRejected", Level = LogLevel.Information,
        Message = "etcd member {Endpoint} rejected our auth token (expired or the member restarted); authenticating again")]
    private static partial void LogTokenRejected(ILogger logger, string endpoint);
}
