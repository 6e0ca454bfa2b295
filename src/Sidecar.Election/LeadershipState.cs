using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;

namespace LeaderSidecar.Election;

/// <summary>
/// The one source of truth for "who leads", as seen by this candidate. The elector publishes; HTTP,
/// gRPC, the file flag and metrics read <see cref="Current"/> or subscribe with
/// <see cref="WatchAsync"/>. No surface decides leadership on its own.
/// </summary>
/// <remarks>
/// A leader status carries its own <see cref="LeadershipStatus.ClaimDeadline"/>, and this class
/// enforces it: at that instant the status is demoted to <see cref="Role.Unknown"/> by a timer, and
/// <see cref="Current"/> checks it again on every read, so a claim can never be served past its
/// deadline even if the elector's loop is stuck in a request or the process was paused.
/// </remarks>
public sealed partial class LeadershipState : IDisposable
{
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private LeadershipStatus _current;
    private TaskCompletionSource _changed = NewSignal();
    private ITimer? _claimTimer;
    private Action<LeadershipStatus>[] _subscribers = [];

    public LeadershipState(ElectionOptions options, TimeProvider time, ILogger<LeadershipState> logger)
    {
        _time = time;
        _logger = logger;
        _current = new LeadershipStatus
        {
            Identity = options.Identity,
            Role = Role.Unknown,
            LeaseName = options.LeaseName,
            LeaseNamespace = options.LeaseNamespace,
            Revision = 1,
        };
    }

    /// <summary>The newest status; a leader status past its claim deadline is demoted first.</summary>
    public LeadershipStatus Current
    {
        get
        {
            lock (_gate)
            {
                DemoteIfClaimExpired();
                return _current;
            }
        }
    }

    /// <summary>
    /// Replaces the status. The revision is assigned here: it grows by one when the new status tells
    /// an app something different, and stays when only the observation time moved.
    /// </summary>
    public LeadershipStatus Publish(LeadershipStatus next)
    {
        lock (_gate)
        {
            if (next.ClaimDeadline is { } deadline && _time.GetTimestamp() >= deadline)
            {
                next = Demoted(next);
            }

            if (next.SameAs(_current))
            {
                _current = next with { Revision = _current.Revision };
                return _current;
            }

            Replace(next);
            return _current;
        }
    }

    /// <summary>
    /// Calls <paramref name="onChange"/> with the current status now and then with every new one,
    /// synchronously and in revision order, before any reader can see the next status. Meant for
    /// surfaces whose effect must be ordered with the election (the leader file is removed before
    /// the lease is released). Keep it short; it must not throw.
    /// </summary>
    public void Subscribe(Action<LeadershipStatus> onChange)
    {
        lock (_gate)
        {
            _subscribers = [.. _subscribers, onChange];
            onChange(_current);
        }
    }

    /// <summary>Waits until the revision is greater than <paramref name="revision"/>, then returns the newest status.</summary>
    public async Task<LeadershipStatus> WaitForChangeAsync(long revision, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task changed;
            lock (_gate)
            {
                DemoteIfClaimExpired();
                if (_current.Revision > revision)
                {
                    return _current;
                }

                changed = _changed.Task;
            }

            await changed.WaitAsync(cancellationToken);
        }
    }

    /// <summary>
    /// The current status, then every newer one in revision order. A slow reader skips intermediate
    /// states but always ends at the newest; it never slows down the publisher.
    /// </summary>
    public async IAsyncEnumerable<LeadershipStatus> WatchAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var status = Current;
        yield return status;
        while (true)
        {
            status = await WaitForChangeAsync(status.Revision, cancellationToken);
            yield return status;
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _claimTimer?.Dispose();
            _claimTimer = null;
        }
    }

    private void Replace(LeadershipStatus next)
    {
        var previous = _current;
        var before = _time.GetTimestamp();
        _current = next with { Revision = previous.Revision + 1 };

        ArmClaimTimer();

        // A leader whose term or lease changed (the lease was deleted and it created it again) is a
        // new claim in the history too.
        var newClaim = _current.Role == Role.Leader && (previous.Term != _current.Term || previous.LeaseUid != _current.LeaseUid);
        if (previous.Role != _current.Role || newClaim)
        {
            // The history other tools merge must never understate leadership: a start is stamped
            // before anyone could read it, an end after, except that a claim ends at its deadline
            // (from then on every read demotes itself, even before this runs).
            var monotonic = _current.Role == Role.Leader ? before
                : previous.ClaimDeadline is { } claimEnd && claimEnd < before ? claimEnd
                : _time.GetTimestamp();
            LogRoleChanged(_logger, previous.Role, _current.Role, _current.Holder, _current.Term, _current.LeaseUid, _current.Revision, monotonic);
        }

        foreach (var subscriber in _subscribers)
        {
            subscriber(_current);
        }

        var changed = _changed;
        _changed = NewSignal();
        changed.SetResult();
    }

    /// <summary>Arms the timer that demotes a leader status at its claim deadline, or disarms it.</summary>
    private void ArmClaimTimer()
    {
        _claimTimer?.Dispose();
        _claimTimer = null;
        if (_current.ClaimDeadline is { } deadline)
        {
            var due = _time.GetElapsedTime(_time.GetTimestamp(), deadline);
            _claimTimer = _time.CreateTimer(static s => ((LeadershipState)s!).OnClaimTimer(), this, due, Timeout.InfiniteTimeSpan);
        }
    }

    private void OnClaimTimer()
    {
        lock (_gate)
        {
            // Timers run on a coarser clock than the deadline's and can fire a little early; then
            // the deadline has not passed, and the push surfaces (leader file, gRPC Watch) would
            // keep the claim forever if the elector's loop is wedged. Arm again for the rest.
            if (_current.ClaimDeadline is { } deadline && _time.GetTimestamp() < deadline)
            {
                ArmClaimTimer();
                return;
            }

            DemoteIfClaimExpired();
        }
    }

    private void DemoteIfClaimExpired()
    {
        if (_current.ClaimDeadline is { } deadline && _time.GetTimestamp() >= deadline)
        {
            LogClaimExpired(_logger, _current.Term);
            Replace(Demoted(_current));
        }
    }

    private static LeadershipStatus Demoted(LeadershipStatus status) =>
        status with { Role = Role.Unknown, Holder = "", ClaimDeadline = null, ValidUntil = null };

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    [LoggerMessage(EventId = 100, EventName = "RoleChanged", Level = LogLevel.Information,
        Message = "Role changed from {From} to {To}; holder {Holder}, term {Term}, lease uid {LeaseUid}, revision {Revision}, monotonic {MonotonicTimestamp}")]
    private static partial void LogRoleChanged(ILogger logger, Role from, Role to, string holder, long? term, string leaseUid, long revision, long monotonicTimestamp);

    [LoggerMessage(EventId = 101, EventName = "ClaimExpired", Level = LogLevel.Warning,
        Message = "Leadership claim (term {Term}) ran out before a renew succeeded; no longer leader")]
    private static partial void LogClaimExpired(ILogger logger, long? term);
}
