using System.Net.Sockets;
using System.Security.Authentication;
using LeaderSidecar.Election;

namespace LeaderSidecar.Stores.Redis;

/// <summary>Redis error replies and connection failures as <see cref="LeaseStoreFailure"/> reasons.</summary>
internal static class RedisFailures
{
    /// <summary>
    /// An error reply by its code (the first word). Credentials the server rejects are
    /// unauthorized, a user the ACL does not allow is forbidden, a key that is not a hash is an
    /// invalid lease; a server that cannot take writes now (loading its data, a replica, a primary
    /// without enough replicas, busy in a script) is unavailable and retried.
    /// </summary>
    public static LeaseStoreException FromReply(string what, RespValue error)
    {
        var text = error.Text;
        var reason = error.ErrorCode switch
        {
            "WRONGPASS" or "NOAUTH" => LeaseStoreFailure.Unauthorized,
            "NOPERM" => LeaseStoreFailure.Forbidden,
            "WRONGTYPE" => LeaseStoreFailure.Invalid,
            "LOADING" or "MASTERDOWN" or "READONLY" or "NOREPLICAS" or "BUSY" or "CLUSTERDOWN" or "TRYAGAIN" => LeaseStoreFailure.Unavailable,

            // Older servers and the default user without a password answer AUTH with a plain ERR.
            "ERR" when text.StartsWith("ERR AUTH", StringComparison.Ordinal)
                || text.StartsWith("ERR invalid password", StringComparison.Ordinal)
                || text.StartsWith("ERR Client sent AUTH", StringComparison.Ordinal) => LeaseStoreFailure.Unauthorized,

            // A server that wants a password refuses long commands before AUTH with this, not NOAUTH.
            "ERR" when text.StartsWith("ERR Protocol error: unauthenticated", StringComparison.Ordinal) => LeaseStoreFailure.Unauthorized,

            // A command inside a script that the ACL does not allow (Redis 7 words it so).
            "ERR" when text.StartsWith("ERR The user executing the script can't", StringComparison.Ordinal) => LeaseStoreFailure.Forbidden,
            "ERR" when text.StartsWith("ERR max number of clients reached", StringComparison.Ordinal) => LeaseStoreFailure.Unavailable,
            _ => LeaseStoreFailure.ServerError,
        };

        var hint = error.ErrorCode is "MOVED" or "ASK" or "CROSSSLOT" ? " (Redis Cluster is not supported: point --redis at a single primary)" : "";
        return new LeaseStoreException(reason, $"{what}: Redis answered {Kubernetes.KubernetesLeaseStore.Shorten(text)}{hint}");
    }

    /// <summary>A failure of the connection itself; <see langword="null"/> for the caller's own cancellation and for failures already mapped.</summary>
    public static LeaseStoreException? FromException(string what, Exception e, CancellationToken cancellationToken) => e switch
    {
        OperationCanceledException when cancellationToken.IsCancellationRequested => null,
        LeaseStoreException => null,
        RespLimitException => new LeaseStoreException(LeaseStoreFailure.Invalid, $"{what}: the answer is too large for a lease ({e.Message})", e),
        RespProtocolException => new LeaseStoreException(LeaseStoreFailure.Unavailable, $"{what}: {e.Message}", e),
        SocketException socket => new LeaseStoreException(LeaseStoreFailure.Unavailable, $"{what}: Redis unreachable: {socket.SocketErrorCode}: {socket.Message}", e),
        AuthenticationException => new LeaseStoreException(LeaseStoreFailure.Unavailable, $"{what}: TLS handshake with Redis failed: {Inner(e)}", e),
        IOException => new LeaseStoreException(LeaseStoreFailure.Unavailable, $"{what}: Redis connection failed: {Inner(e)}", e),
        OperationCanceledException => new LeaseStoreException(LeaseStoreFailure.Timeout, $"{what} timed out", e),
        _ => null,
    };

    // "Unable to read data from the transport connection: Connection reset by peer." says more than its wrapper.
    private static string Inner(Exception e) =>
        Kubernetes.KubernetesLeaseStore.Shorten(e.InnerException is { } inner && inner.Message != e.Message ? $"{e.Message} ({inner.Message})" : e.Message);
}
