namespace LeaderSidecar.Election;

/// <summary>Why a lease-store request failed; also the label of the failure metrics.</summary>
public enum LeaseStoreFailure
{
    /// <summary>Another writer won the compare-and-swap (HTTP 409, or the file changed under us).</summary>
    Conflict,

    /// <summary>The lease does not exist (HTTP 404 on an update).</summary>
    NotFound,

    /// <summary>Credentials were rejected (HTTP 401).</summary>
    Unauthorized,

    /// <summary>Not allowed to touch the lease (HTTP 403, or file permissions).</summary>
    Forbidden,

    /// <summary>The request did not complete within its timeout.</summary>
    Timeout,

    /// <summary>The server asked us to slow down (HTTP 429).</summary>
    Throttled,

    /// <summary>The server failed (HTTP 5xx).</summary>
    ServerError,

    /// <summary>The store could not be reached (connection refused, DNS, I/O error).</summary>
    Unavailable,

    /// <summary>The stored lease or the request was malformed (HTTP 400/422, unreadable file).</summary>
    Invalid,
}

/// <summary>A lease-store request failed for a <see cref="LeaseStoreFailure"/> reason.</summary>
public sealed class LeaseStoreException : Exception
{
    public LeaseStoreException(LeaseStoreFailure reason, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Reason = reason;
    }

    public LeaseStoreException()
        : this(LeaseStoreFailure.Unavailable, "lease store request failed")
    {
    }

    public LeaseStoreException(string message)
        : this(LeaseStoreFailure.Unavailable, message)
    {
    }

    public LeaseStoreException(string message, Exception innerException)
        : this(LeaseStoreFailure.Unavailable, message, innerException)
    {
    }

    /// <summary>Why the request failed.</summary>
    public LeaseStoreFailure Reason { get; }
}
