using Microsoft.Extensions.Logging;

namespace LeaderSidecar.Election;

public sealed partial class LeaderElector
{
    [LoggerMessage(EventId = 1, EventName = "Acquired", Level = LogLevel.Information,
        Message = "Acquired {Lease}; term {Term}, lease uid {LeaseUid}")]
    private static partial void LogAcquired(ILogger logger, string lease, int term, string leaseUid);

    [LoggerMessage(EventId = 2, EventName = "SteppedDown", Level = LogLevel.Warning,
        Message = "Stepped down: {Reason}")]
    private static partial void LogSteppedDown(ILogger logger, string reason);

    [LoggerMessage(EventId = 11, EventName = "Resigning", Level = LogLevel.Information,
        Message = "Stepping down and releasing the lease: {Reason}")]
    private static partial void LogResigning(ILogger logger, string reason);

    [LoggerMessage(EventId = 12, EventName = "BeforeReleaseFailed", Level = LogLevel.Warning,
        Message = "Waiting before the release failed ({Reason}); releasing now")]
    private static partial void LogBeforeReleaseFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 3, EventName = "Released", Level = LogLevel.Information,
        Message = "Released {Lease}")]
    private static partial void LogReleased(ILogger logger, string lease);

    [LoggerMessage(EventId = 4, EventName = "ReleaseFailed", Level = LogLevel.Warning,
        Message = "Could not release the lease ({Reason}); followers take it when it expires")]
    private static partial void LogReleaseFailed(ILogger logger, LeaseStoreFailure reason);

    [LoggerMessage(EventId = 5, EventName = "SlowPath", Level = LogLevel.Information,
        Message = "Renew conflicted with another write; re-reading the lease (slow path)")]
    private static partial void LogSlowPath(ILogger logger);

    [LoggerMessage(EventId = 6, EventName = "Conflict", Level = LogLevel.Debug,
        Message = "Lease {Verb} for {Purpose} lost a compare-and-swap to another writer")]
    private static partial void LogConflict(ILogger logger, string verb, string purpose);

    [LoggerMessage(EventId = 7, EventName = "RequestFailed", Level = LogLevel.Warning,
        Message = "Lease {Verb} for {Purpose} failed ({Reason}): {Detail}; retrying")]
    private static partial void LogRequestFailed(ILogger logger, string verb, string purpose, LeaseStoreFailure reason, string detail);

    [LoggerMessage(EventId = 8, EventName = "WatchConnected", Level = LogLevel.Debug,
        Message = "Watching the lease")]
    private static partial void LogWatchConnected(ILogger logger);

    [LoggerMessage(EventId = 9, EventName = "WatchEnded", Level = LogLevel.Debug,
        Message = "Lease watch ended; reconnecting")]
    private static partial void LogWatchEnded(ILogger logger);

    [LoggerMessage(EventId = 10, EventName = "WatchFailed", Level = LogLevel.Warning,
        Message = "Lease watch failed ({Reason}): {Detail}; polling until it reconnects in {BackoffMs} ms")]
    private static partial void LogWatchFailed(ILogger logger, LeaseStoreFailure reason, string detail, double backoffMs);

    [LoggerMessage(EventId = 13, EventName = "LeaseContradicted", Level = LogLevel.Information,
        Message = "The watch says the lease is held by '{Holder}'; renewing now to find out whether that is newer than our last write")]
    private static partial void LogContradicted(ILogger logger, string? holder);

    [LoggerMessage(EventId = 14, EventName = "TermExhausted", Level = LogLevel.Error,
        Message = "Cannot take {Lease}: its term (leaseTransitions) is at its maximum, so a new holder would share a fencing term with an earlier one; delete the lease to start a new one")]
    private static partial void LogTermExhausted(ILogger logger, string lease);

    [LoggerMessage(EventId = 15, EventName = "StandingAside", Level = LogLevel.Warning,
        Message = "Not fit to lead ({Reason}): stepping down and releasing the lease so a fit replica takes over")]
    private static partial void LogStandingAside(ILogger logger, string reason);

    [LoggerMessage(EventId = 16, EventName = "AcquiredUnfit", Level = LogLevel.Warning,
        Message = "Took the lease although not fit to lead ({Reason}): nobody fit took it within a lease duration, and an unfit leader beats none; keeping it until fit again")]
    private static partial void LogAcquiredUnfit(ILogger logger, string reason);

    [LoggerMessage(EventId = 17, EventName = "StandAsideDeferred", Level = LogLevel.Warning,
        Message = "Not fit to lead ({Reason}), but this replica stood aside recently; keeping the lease for at least {Seconds:0} s more, so leadership does not flap")]
    private static partial void LogStandAsideDeferred(ILogger logger, string reason, double seconds);

    [LoggerMessage(EventId = 18, EventName = "HandingOver", Level = LogLevel.Information,
        Message = "Asked to hand the lease of term {Term} over to '{Successor}': stepping down and releasing it to that candidate")]
    private static partial void LogHandingOver(ILogger logger, string successor, int term);
}
