using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace LeaderSidecar.Election;

/// <summary>
/// Leader election over one lease, compatible with client-go's <c>leaderelection</c> on the same
/// record.
/// </summary>
/// <remarks>
/// <para>
/// What is promised: at no instant do two candidates publish <see cref="Role.Leader"/> for the same
/// lease, provided every candidate has a unique identity and the <em>rates</em> of their monotonic
/// clocks differ by less than the margin <c>LeaseDuration − RenewDeadline</c> leaves. Wall clocks may
/// be wrong or jump: they are only written into the record for humans and never compared.
/// </para>
/// <para>
/// Why it holds: a follower may take the lease only after <c>leaseDurationSeconds</c> (from the
/// record) have passed on its own monotonic clock since it last saw the record change, and it must
/// win a compare-and-swap on the version it saw. The leader stops claiming at <c>RenewDeadline</c>
/// after the <em>start</em> of its last successful renew; every follower saw that renew no earlier
/// than it started, so the leader's claim runs out before any follower's wait does.
/// <see cref="LeadershipState"/> enforces the deadline even when this loop is stuck or the process
/// was paused.
/// </para>
/// <para>
/// What is not promised: this is not a lock around the app's side effects. A paused app can act on a
/// stale belief; apps that need that protection fence their writes with the published term
/// (<c>leaseTransitions</c> at acquisition, with the lease uid). A lease deleted or rewritten by
/// hand is waited out like an expiring claim by every candidate that saw it held before — a record
/// naming this identity counts as ours only if this process wrote it — so only a candidate that
/// starts just after such a deletion, never having seen the lease, can create it while the old
/// holder still claims (as client-go would). A watch event that says
/// the leader no longer holds the lease may be older than the leader's own last write (a list
/// begun before it, a release still in flight), so the leader does not believe it blindly: it
/// renews at once, and only a failed compare-and-swap and a fresh read step it down.
/// </para>
/// <para>
/// Followers learn about changes from <see cref="ILeaseStore.WatchAsync"/>, so a released lease is
/// taken within milliseconds; while the watch is down they poll every <c>RetryPeriod</c>.
/// </para>
/// <para>
/// Who may lead: an observer (<see cref="ElectionOptions.Campaign"/> false) never writes; a
/// <see cref="ElectionOptions.CampaignDelay"/> lets undelayed candidates take a free or expired
/// lease first; a closed <see cref="CampaignGate"/> makes a follower wait a further lease duration
/// and a leader stand aside (rules at <see cref="CampaignAt"/> and <see cref="MustStandAside"/>).
/// None of them changes when a lease may be taken, only whether and how much later to try, so the
/// safety argument above is untouched.
/// </para>
/// <para>
/// Threading: one loop (<see cref="RunAsync"/>) owns all election state. The watch, the gate and
/// the <see cref="ResignAsync"/>/<see cref="StopAsync"/> callers talk to it through an inbox.
/// </para>
/// </remarks>
public sealed partial class LeaderElector : IDisposable
{
    private static readonly TimeSpan WatchBackoffInitial = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan WatchBackoffMax = TimeSpan.FromSeconds(30);

    private readonly ILeaseStore _store;
    private readonly ElectionOptions _options;
    private readonly LeadershipState _state;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly IElectionMetrics _metrics;
    private readonly CampaignGate? _gate;
    private readonly Func<CancellationToken, Task>? _beforeStandAsideRelease;
    private readonly Channel<Message> _inbox = Channel.CreateUnbounded<Message>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Lock _publishGate = new();
    private readonly TaskCompletionSource _loopExited = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Owned by the loop.
    private LeaseSnapshot? _observed;
    private bool _hasObservation;
    private long _observedChangedAt;
    private readonly OwnRecords _own;
    private long _vanishedAvailableAt;
    private long? _lastObservedAt;
    private bool _readFailing;
    private bool _watchHealthy;
    private bool _leading;
    private long _claimDeadline;
    private DateTimeOffset _validUntil;
    private long _nextAttemptAt;
    private long _nextPollAt;
    private long _holdOffUntil;
    private Task<bool>? _pendingRead;
    private long _busySince;
    private bool _gateOpen = true;
    private long? _stoodAsideAt;
    private bool _acquiredUnfit;
    private bool _standAsideDeferred;

    // Shared with ResignAsync/StopAsync callers; guarded by _publishGate.
    private bool _resigning;
    private CancellationTokenSource _interrupt = new();

    public LeaderElector(
        ILeaseStore store,
        ElectionOptions options,
        LeadershipState state,
        TimeProvider time,
        ILogger<LeaderElector> logger,
        IElectionMetrics? metrics = null,
        CampaignGate? gate = null,
        Func<CancellationToken, Task>? beforeStandAsideRelease = null)
    {
        if (options.Validate() is { } problem)
        {
            throw new ArgumentException(problem, nameof(options));
        }

        _store = store;
        _options = options;
        _state = state;
        _time = time;
        _logger = logger;
        _metrics = metrics ?? NullElectionMetrics.Instance;
        _own = new OwnRecords(options.Identity);
        _gate = gate;
        _beforeStandAsideRelease = beforeStandAsideRelease;
        if (gate is not null)
        {
            _gateOpen = gate.IsOpen;
            gate.Subscribe(OnGateChanged);
        }
    }

    private string Me => _options.Identity;

    /// <summary>
    /// Campaigns until <see cref="StopAsync"/> is called (which releases the lease) or
    /// <paramref name="cancellationToken"/> is cancelled (which abandons it, like a crash: the claim
    /// simply runs out).
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var loopCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var watch = WatchLoopAsync(loopCts.Token);
        try
        {
            await LoopAsync(loopCts.Token);
        }
        catch (OperationCanceledException) when (loopCts.IsCancellationRequested)
        {
        }
        finally
        {
            await loopCts.CancelAsync();
            await watch;
            _leading = false;
            Volatile.Write(ref _busySince, 0);
            PublishView();
            _loopExited.TrySetResult();
        }
    }

    /// <summary>
    /// Steps down and releases the lease, then does not campaign for <paramref name="holdOff"/>.
    /// Every surface stops saying "leader" before the release is written.
    /// </summary>
    public Task ResignAsync(TimeSpan holdOff, CancellationToken cancellationToken) =>
        SendResignAsync(holdOff, stop: false, cancellationToken);

    /// <summary>
    /// Steps down, awaits <paramref name="beforeRelease"/> (for example, until every watcher has
    /// been told), releases the lease, then does not campaign for <paramref name="holdOff"/>.
    /// </summary>
    public Task ResignAsync(TimeSpan holdOff, Func<CancellationToken, Task> beforeRelease, CancellationToken cancellationToken) =>
        SendResignAsync(holdOff, stop: false, cancellationToken, beforeRelease);

    /// <summary>Steps down, releases the lease and ends <see cref="RunAsync"/>.</summary>
    public Task StopAsync(CancellationToken cancellationToken) =>
        SendResignAsync(Timeout.InfiniteTimeSpan, stop: true, cancellationToken);

    /// <summary>
    /// Steps down, then awaits <paramref name="beforeRelease"/> (for example, until the app confirms
    /// it stopped its leader work), then releases the lease and ends <see cref="RunAsync"/>. The
    /// lease is not renewed meanwhile: followers take it when it expires if the wait is longer.
    /// </summary>
    public Task StopAsync(Func<CancellationToken, Task> beforeRelease, CancellationToken cancellationToken) =>
        SendResignAsync(Timeout.InfiniteTimeSpan, stop: true, cancellationToken, beforeRelease);

    /// <summary>
    /// How long the loop has been busy in one step, or zero while it waits. A step is bounded by the
    /// request timeout, so a much larger value means the process is wedged (a liveness signal).
    /// </summary>
    public TimeSpan BusyFor
    {
        get
        {
            var since = Volatile.Read(ref _busySince);
            return since == 0 ? TimeSpan.Zero : _time.GetElapsedTime(since);
        }
    }

    private async Task SendResignAsync(TimeSpan holdOff, bool stop, CancellationToken cancellationToken, Func<CancellationToken, Task>? beforeRelease = null)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_publishGate)
        {
            // Surfaces first: from here on no publish can say "leader" until the resign is handled.
            _resigning = true;
            var current = _state.Current;
            if (current.IsLeader)
            {
                _state.Publish(current with { Role = Role.Follower, ClaimDeadline = null, ValidUntil = null });
            }

            _interrupt.Cancel();
        }

        _inbox.Writer.TryWrite(new Resign(holdOff, stop, done, beforeRelease));
        await Task.WhenAny(done.Task, _loopExited.Task).WaitAsync(cancellationToken);
    }

    private void OnGateChanged(bool open) => _inbox.Writer.TryWrite(new GateChanged(open));

    public void Dispose()
    {
        _gate?.Unsubscribe(OnGateChanged);
        lock (_publishGate)
        {
            _interrupt.Dispose();
        }
    }

    private async Task LoopAsync(CancellationToken ct)
    {
        Volatile.Write(ref _busySince, Math.Max(1, _time.GetTimestamp()));
        PublishView();
        while (true)
        {
            while (_inbox.Reader.TryRead(out var message))
            {
                if (await HandleAsync(message, ct))
                {
                    return;
                }
            }

            var now = _time.GetTimestamp();
            if (_leading && now >= _claimDeadline)
            {
                StepDown("renew deadline passed without a successful renew");
            }

            if (_leading && MustStandAside(now))
            {
                await StandAsideAsync(ct);
            }

            if (_leading ? now >= _nextAttemptAt : CampaignDue(now))
            {
                await TryAcquireOrRenewAsync(ct);
            }
            else if (!_leading && !_watchHealthy && now >= _nextPollAt)
            {
                _nextPollAt = _time.Add(now, _options.RetryPeriod);
                await ReadAsync("observe", ct);
            }

            if (_leading && HandOverRequested() is { } successor)
            {
                await HandOverAsync(successor, ct);
            }

            PublishView();
            Volatile.Write(ref _busySince, 0);
            await WaitAsync(NextWakeAt(), ct);
            Volatile.Write(ref _busySince, Math.Max(1, _time.GetTimestamp()));
        }
    }

    private bool CampaignDue(long now) =>
        _options.Campaign && now >= _holdOffUntil && now >= _nextAttemptAt && (!_hasObservation || CampaignAt() <= now);

    /// <summary>
    /// When this candidate may campaign for the observed lease, on the monotonic clock: when it is
    /// available (<see cref="AvailableAt"/>), later by the campaign delay, and, while the gate is
    /// closed, later by a further lease duration — so fit candidates take it first, and an unfit one
    /// takes it only once nobody has for that long (an unfit leader beats no leader).
    /// </summary>
    /// <remarks>
    /// A released lease handed over to a named candidate (<see cref="HandedOverTo"/>) is that
    /// candidate's to take at once, without its campaign delay (unless it is unfit: then the gate's
    /// rule stands). Everyone else leaves it alone for a further lease duration (our own) on our
    /// clock from when we saw the release, so a named candidate that is missing or down delays the
    /// next leader by at most that much.
    /// </remarks>
    private long CampaignAt()
    {
        var extra = _options.CampaignDelay + (_gateOpen ? TimeSpan.Zero : _options.LeaseDuration);
        var at = extra <= TimeSpan.Zero ? AvailableAt() : _time.Add(FreeSince(), extra);
        return HandedOverTo() switch
        {
            null => at,
            var successor when successor == Me => _gateOpen ? AvailableAt() : at,
            _ => Math.Max(at, _time.Add(_observedChangedAt, _options.LeaseDuration)),
        };
    }

    /// <summary>
    /// Who the observed lease was handed over to: the candidate a request for its current term
    /// names, while the lease is released; else <see langword="null"/>. A request for another term
    /// is void.
    /// </summary>
    private string? HandedOverTo() =>
        _observed is { Record.IsReleased: true, HandOver: { } request } lease && request.AppliesTo(lease.Record)
            ? request.Identity
            : null;

    /// <summary>
    /// Leader only: the candidate our term's holder is asked to hand the lease to, unless that is
    /// us; else <see langword="null"/>.
    /// </summary>
    private string? HandOverRequested() =>
        _observed is { HandOver: { } request } lease
        && request.AppliesTo(lease.Record)
        && request.Identity != Me
        && _own.IsOurs(lease, claiming: true)
            ? request.Identity
            : null;

    /// <summary>
    /// Steps down and releases, as a resign does (the surfaces and the app are told first), because
    /// the lease was asked to go to <paramref name="successor"/>. The store keeps the request on the
    /// released lease, so the successor takes it at once and everyone else leaves it to it.
    /// </summary>
    private async Task HandOverAsync(string successor, CancellationToken ct)
    {
        _leading = false;
        LogHandingOver(_logger, successor, _observed?.Record.LeaseTransitions ?? 0);
        await ReleaseAfterAsync(_beforeStandAsideRelease, ct);
        _nextAttemptAt = _time.GetTimestamp();
    }

    /// <summary>
    /// Since when the observed lease has been free for every candidate: since we saw it released or
    /// gone, or since its holder's duration ran out on our clock. A claim of ours we no longer hold
    /// counts like anyone's: a delayed or unfit candidate lets others take it first.
    /// </summary>
    private long FreeSince()
    {
        var record = _observed?.Record;
        if (record is null)
        {
            return Math.Max(_vanishedAvailableAt, _observedChangedAt);
        }

        return record.IsReleased
            ? _observedChangedAt
            : _time.Add(_observedChangedAt, TimeSpan.FromSeconds(Math.Max(0, record.LeaseDurationSeconds)));
    }

    /// <summary>
    /// A leader whose gate is closed stands aside so a fit candidate can lead, unless (1) it took the
    /// lease while unfit because nobody fit did, and the gate has not opened since — standing aside
    /// again would only leave the lease empty for another lease duration — or (2) it stood aside
    /// less than <see cref="ElectionOptions.StandAsideInterval"/> ago, so a flapping check changes
    /// leadership at most once per interval per candidate.
    /// </summary>
    private bool MustStandAside(long now)
    {
        if (_gateOpen || _acquiredUnfit)
        {
            return false;
        }

        if (_stoodAsideAt is { } last && _time.GetElapsedTime(last, now) < _options.StandAsideInterval)
        {
            if (!_standAsideDeferred)
            {
                _standAsideDeferred = true;
                LogStandAsideDeferred(_logger, _gate?.Reason ?? "", (_options.StandAsideInterval - _time.GetElapsedTime(last, now)).TotalSeconds);
            }

            return false;
        }

        return true;
    }

    /// <summary>Steps down and releases, as a resign does, because the gate closed.</summary>
    private async Task StandAsideAsync(CancellationToken ct)
    {
        _leading = false;
        _stoodAsideAt = _time.GetTimestamp();
        _metrics.StoodAside();
        LogStandingAside(_logger, _gate?.Reason ?? "");
        await ReleaseAfterAsync(_beforeStandAsideRelease, ct);

        // The next renew is off: once fit again, campaign as soon as the gate and the lease allow.
        _nextAttemptAt = _time.GetTimestamp();
    }

    /// <summary>When the observed lease may be taken by this candidate, on the monotonic clock.</summary>
    private long AvailableAt()
    {
        var record = _observed?.Record;
        if (record is null)
        {
            return _vanishedAvailableAt;
        }

        if (record.IsReleased || _own.IsOurs(_observed, _leading))
        {
            return 0;
        }

        // Use the record's duration, not our own flag: the holder promised to renew within it. A
        // non-positive duration is nobody's promise (no elector writes one; client-go takes it as
        // expired): it is a hand edit, and the holder it replaced may claim until its renew
        // deadline without having seen it. So it is waited out for our own lease duration, as a
        // deletion is.
        var duration = record.LeaseDurationSeconds > 0 ? TimeSpan.FromSeconds(record.LeaseDurationSeconds) : _options.LeaseDuration;
        return _time.Add(_observedChangedAt, duration);
    }

    private long NextWakeAt()
    {
        if (_leading)
        {
            return Math.Min(_nextAttemptAt, _claimDeadline);
        }

        var campaign = _options.Campaign ? Math.Max(Math.Max(_holdOffUntil, _nextAttemptAt), _hasObservation ? CampaignAt() : 0) : long.MaxValue;
        return _watchHealthy ? campaign : Math.Min(campaign, _nextPollAt);
    }

    /// <summary>
    /// One compare-and-swap step, as client-go's <c>tryAcquireOrRenew</c>: (1) take the lease as last
    /// seen, (2) create it if missing, (3) check holder and expiry, (4) build the new record,
    /// (5) write it with the version it was read at. Returns whether this candidate leads afterwards.
    /// </summary>
    internal async Task<bool> TryAcquireOrRenewAsync(CancellationToken ct)
    {
        var attemptStart = _time.GetTimestamp();
        var outcome = await TryAcquireOrRenewCoreAsync(ct);
        _nextAttemptAt = outcome switch
        {
            Outcome.Leading => _time.Add(attemptStart, _options.RetryPeriod),
            // Held: the lease's own expiry (or a watched release) decides when to try again.
            Outcome.Held => attemptStart,
            _ => _time.Add(attemptStart, Jittered(_options.RetryPeriod)),
        };
        return outcome == Outcome.Leading;
    }

    private async Task<Outcome> TryAcquireOrRenewCoreAsync(CancellationToken ct)
    {
        var purpose = _leading ? "renew" : "acquire";

        // 1. The leader renews over its own last write without reading first (the fast path). A
        //    follower whose watch is live trusts the newest watched state. Everyone else reads.
        var fromCache = _hasObservation && (_leading || _watchHealthy);
        if (!fromCache && !await ReadAsync(purpose, ct))
        {
            return Outcome.Failed;
        }

        var outcome = await AttemptAsync(purpose, ct);
        if (outcome != Outcome.Conflict)
        {
            return outcome;
        }

        // Someone wrote since we last looked. Read once and decide again; never write blindly. A
        // conflict says nothing about when the lease is free again: only the record does. Without
        // this read a candidate that lost a race would sit out a whole retry period, even if the
        // winner released at once.
        if (_leading && fromCache)
        {
            _metrics.SlowPath();
            LogSlowPath(_logger);
        }

        return await ReadAsync(purpose, ct) ? await AttemptAsync(purpose, ct) : Outcome.Failed;
    }

    private async Task<Outcome> AttemptAsync(string purpose, CancellationToken ct)
    {
        var start = _time.GetTimestamp();
        var now = Truncate(_time.GetUtcNow());
        var current = _observed;
        LeaseRecord record;
        Func<CancellationToken, Task<LeaseSnapshot>> write;

        if (current is null)
        {
            // 2. No lease: create it. Losing that race is a conflict like any other. A lease we saw
            //    held and then vanish is deleted by hand; its holder may still be claiming, so wait
            //    that claim out first.
            if (CampaignAt() > start)
            {
                return Outcome.Held;
            }

            record = new LeaseRecord(Me, (int)_options.LeaseDuration.TotalSeconds, now, now, 0);
            write = token => _store.CreateAsync(record, token);
        }
        else
        {
            // 3. Held by someone else whose claim has not run out on our clock (or, for a delayed or
            //    unfit candidate, not for long enough): nothing to do.
            var old = current.Record;
            if (!_leading && CampaignAt() > start)
            {
                return Outcome.Held;
            }

            // 4. Keep acquireTime and the term when renewing our own claim; a new holder starts a new
            //    term, and so does taking over a record that names us but that we did not write.
            var renewing = _own.IsOurs(current, _leading);
            if (!renewing && old.LeaseTransitions == int.MaxValue)
            {
                // A new holder needs a new term, and there is none left: leading with a term another
                // holder had would break every fence built on it. Deleting the lease starts a new
                // fencing domain (a new uid, term 0).
                _metrics.TermExhausted();
                LogTermExhausted(_logger, _store.Description);
                return Outcome.Failed;
            }

            record = new LeaseRecord(
                Me,
                (int)_options.LeaseDuration.TotalSeconds,
                renewing ? old.AcquireTime : now,
                now,
                renewing ? old.LeaseTransitions : old.LeaseTransitions + 1);
            write = token => _store.UpdateAsync(current, record, token);
        }

        // 5. Compare-and-swap.
        _own.Attempting(record);
        var result = await CallAsync(current is null ? "create" : "update", purpose, write, ct);
        if (result.Failure is { } failure)
        {
            // An update of a lease deleted meanwhile is answered "not found": a lost race too.
            return failure == LeaseStoreFailure.Conflict || (failure == LeaseStoreFailure.NotFound && current is not null)
                ? Outcome.Conflict
                : Outcome.Failed;
        }

        var wasLeading = _leading;
        _own.Written(result.Lease!);
        Observe(result.Lease);
        var deadline = _time.Add(start, _options.RenewDeadline);
        if (_time.GetTimestamp() >= deadline)
        {
            // The write landed, but later than our own deadline allows us to rely on it.
            return Outcome.Failed;
        }

        _leading = true;
        _claimDeadline = deadline;
        _validUntil = _time.GetUtcNow() + _time.Until(deadline);
        if (!wasLeading)
        {
            LogAcquired(_logger, _store.Description, result.Lease!.Record.LeaseTransitions, result.Lease.Uid);
            _acquiredUnfit = !_gateOpen;
            if (_acquiredUnfit)
            {
                LogAcquiredUnfit(_logger, _gate?.Reason ?? "");
            }
        }

        return Outcome.Leading;
    }

    /// <summary>
    /// Writes the release record client-go writes (empty holder, 1 s duration, same transitions)
    /// over our own last write. Called only after the surfaces stopped saying "leader".
    /// </summary>
    internal async Task ReleaseAsync(CancellationToken ct)
    {
        // Only a record this process wrote: one that merely names us (a hand edit, a previous
        // process) may be someone else's running claim, and releasing it would hand it to a third.
        // A record seen while our claim still ran is ours even at another version (only metadata
        // changed, an annotation say): nobody else could have taken it then, and the compare-and-
        // swap below fails if anyone wrote since.
        var current = _observed;
        if (!_own.IsOurs(current, claiming: _lastObservedAt is { } seen && seen < _claimDeadline))
        {
            return;
        }

        var now = Truncate(_time.GetUtcNow());
        var record = new LeaseRecord("", 1, now, now, current.Record.LeaseTransitions);
        var result = await CallAsync("update", "release", token => _store.UpdateAsync(current, record, token), ct, interruptible: false);
        if (result.Failure == LeaseStoreFailure.Conflict
            && await CallAsync("get", "release", token => _store.GetAsync(token), ct, interruptible: false) is { Failure: null, Lease: { } fresh }
            && _own.IsOurs(fresh, claiming: false))
        {
            // The renew the step-down cancelled had landed after all (the record is exactly one of
            // our unanswered attempts): nobody else wrote, so release over that version instead of
            // leaving the followers to wait for expiry.
            Observe(fresh);
            result = await CallAsync("update", "release", token => _store.UpdateAsync(fresh, record, token), ct, interruptible: false);
        }

        if (result.Failure is null)
        {
            _own.Written(result.Lease!);
            Observe(result.Lease);
            LogReleased(_logger, _store.Description);
        }
        else
        {
            LogReleaseFailed(_logger, result.Failure.Value);
        }
    }

    private async Task<bool> ReadAsync(string purpose, CancellationToken ct)
    {
        var result = await CallAsync("get", purpose, token => _store.GetAsync(token), ct);
        if (result.Failure is not null)
        {
            _readFailing = true;
            return false;
        }

        Observe(result.Lease);
        return true;
    }

    /// <summary>
    /// A change delivered by the watch. While we lead, our own record is believed; an earlier record
    /// of our current claim (the late echo of a previous renew, or a resumed watch replaying) is
    /// old news and ignored. Anything else may predate our last write too — a watch resumed from an
    /// old version replays records with older terms before the newest — so instead of believing
    /// it, renew now: the compare-and-swap settles it, and the published term never goes back.
    /// </summary>
    internal void ObserveChange(LeaseSnapshot? lease)
    {
        lease = Bounded(lease);
        if (_leading && !_own.IsOurs(lease, claiming: true))
        {
            if (!_own.IsEarlierInTerm(lease))
            {
                LogContradicted(_logger, lease?.Record.HolderIdentity);
                _nextAttemptAt = _time.GetTimestamp();
            }

            return;
        }

        Observe(lease);
    }

    /// <summary>Records what the store holds, and when it last changed on our monotonic clock.</summary>
    internal void Observe(LeaseSnapshot? lease)
    {
        lease = Bounded(lease);
        var now = _time.GetTimestamp();

        // A change is a new version or other content. Content alone misses a holder whose wall
        // clock is frozen (it writes identical records); version alone misses a store that reuses
        // a version with other content (such stores write a nonce into every record).
        if (!_hasObservation || lease?.Version != _observed?.Version || lease?.Record != _observed?.Record || lease?.Uid != _observed?.Uid)
        {
            _observedChangedAt = now;
        }

        if (lease is not null)
        {
            _vanishedAvailableAt = 0;
        }
        else if (_observed is { Record.IsReleased: false } vanished && !(_leading && now < _claimDeadline && _own.IsOurs(vanished, claiming: true)))
        {
            // Deleted while held by someone else, or by us after our claim ran out: while we were
            // not looking (paused, cut off) someone may have taken it over before the deletion. That
            // holder can no longer renew, but may claim until its renew deadline: wait a full lease
            // duration from now (ours if it is longer, in case we missed a newer record with a
            // longer duration) before creating it again. Only a live claim of ours rules that out.
            var seconds = Math.Max(0, vanished.Record.LeaseDurationSeconds);
            _vanishedAvailableAt = _time.Add(now, TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(seconds).Ticks, _options.LeaseDuration.Ticks)));
        }

        _hasObservation = true;
        _observed = lease;
        _lastObservedAt = now;
        _readFailing = false;

        if (_leading && !_own.IsOurs(lease, claiming: true))
        {
            StepDown(lease is null ? "the lease was deleted" : $"the lease is now held by '{lease.Record.HolderIdentity}'");
        }
    }

    private void StepDown(string reason)
    {
        _leading = false;
        LogSteppedDown(_logger, reason);
    }

    private async Task<StoreResult> CallAsync<T>(
        string verb,
        string purpose,
        Func<CancellationToken, Task<T>> call,
        CancellationToken ct,
        bool interruptible = true)
        where T : class?
    {
        // Every request ends before the renew deadline: within RequestTimeout, and for the leader no
        // later than its claim deadline, so an in-flight renew is cancelled the moment the claim ends.
        var timeout = _options.RequestTimeout;
        if (_leading)
        {
            timeout = TimeSpan.FromTicks(Math.Min(timeout.Ticks, _time.Until(_claimDeadline).Ticks));
        }

        CancellationToken interrupt;
        lock (_publishGate)
        {
            interrupt = interruptible ? _interrupt.Token : CancellationToken.None;
        }

        using var timeoutCts = new CancellationTokenSource(timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, timeoutCts.Token, interrupt);
        var started = _time.GetTimestamp();
        LeaseStoreFailure failure;
        string message;
        try
        {
            var lease = await call(linked.Token);
            _metrics.RequestCompleted(verb, purpose, null, _time.GetElapsedTime(started));
            return new StoreResult(lease as LeaseSnapshot, null);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw;
        }
        catch (OperationCanceledException) when (interrupt.IsCancellationRequested)
        {
            return new StoreResult(null, LeaseStoreFailure.Timeout);
        }
        catch (OperationCanceledException)
        {
            failure = LeaseStoreFailure.Timeout;
            message = $"no answer within {timeout.TotalMilliseconds:0} ms";
        }
        catch (LeaseStoreException e)
        {
            failure = e.Reason;
            message = Clip(e.Message);
        }
        catch (Exception e)
        {
            // A store bug must not end the election loop; it is reported and retried like an outage.
            failure = LeaseStoreFailure.Unavailable;
            message = Clip(e.Message);
        }

        _metrics.RequestCompleted(verb, purpose, failure, _time.GetElapsedTime(started));
        if (failure == LeaseStoreFailure.Conflict)
        {
            LogConflict(_logger, verb, purpose);
        }
        else
        {
            LogRequestFailed(_logger, verb, purpose, failure, message);
            _readFailing = true;
        }

        return new StoreResult(null, failure);
    }

    private async Task<bool> HandleAsync(Message message, CancellationToken ct)
    {
        switch (message)
        {
            case Observed observed:
                ObserveChange(observed.Lease);
                return false;

            case WatchHealth health:
                _watchHealthy = health.Healthy;
                if (!health.Healthy)
                {
                    // Give the watch one retry period to come back before reading by hand.
                    _nextPollAt = _time.Add(_time.GetTimestamp(), _options.RetryPeriod);
                }

                return false;

            case GateChanged gate:
                _gateOpen = gate.Open;
                if (gate.Open)
                {
                    // Fit again: a later closing may make this leader stand aside (within the interval).
                    _acquiredUnfit = false;
                    _standAsideDeferred = false;
                }

                return false;

            case Resign resign:
                if (_leading)
                {
                    _leading = false;
                    LogResigning(_logger, resign.Stop ? "shutting down" : "resigned on request");
                }

                await ReleaseAfterAsync(resign.BeforeRelease, ct);
                var now = _time.GetTimestamp();
                _holdOffUntil = resign.HoldOff == Timeout.InfiniteTimeSpan ? long.MaxValue : _time.Add(now, resign.HoldOff);
                lock (_publishGate)
                {
                    _resigning = resign.Stop;
                    if (_interrupt.IsCancellationRequested)
                    {
                        _interrupt.Dispose();
                        _interrupt = new CancellationTokenSource();
                    }
                }

                PublishView();
                resign.Done.TrySetResult();
                return resign.Stop;

            default:
                return false;
        }
    }

    /// <summary>
    /// After a step-down: tells the surfaces, awaits <paramref name="beforeRelease"/> (for example,
    /// until the app's leader work has stopped and every watcher has been told), then releases.
    /// </summary>
    private async Task ReleaseAfterAsync(Func<CancellationToken, Task>? beforeRelease, CancellationToken ct)
    {
        PublishView();
        if (beforeRelease is not null)
        {
            try
            {
                await beforeRelease(ct);
            }
            catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
            {
                LogBeforeReleaseFailed(_logger, e.Message);
            }
        }

        await ReleaseAsync(ct);
    }

    /// <summary>Publishes what the loop knows now. The only place the loop tells the surfaces anything.</summary>
    internal void PublishView()
    {
        lock (_publishGate)
        {
            var status = new LeadershipStatus
            {
                Identity = Me,
                LeaseName = _options.LeaseName,
                LeaseNamespace = _options.LeaseNamespace,
                LastObservedAt = _lastObservedAt,
                Role = Role.Unknown,
            };

            if (_leading && !_resigning)
            {
                status = status with
                {
                    Role = Role.Leader,
                    Holder = Me,
                    Term = _observed?.Record.LeaseTransitions,
                    LeaseUid = _observed?.Uid ?? "",
                    ClaimDeadline = _claimDeadline,
                    ValidUntil = _validUntil,
                };
            }
            else if (_hasObservation && (_watchHealthy || !_readFailing))
            {
                status = status with
                {
                    Role = Role.Follower,
                    Holder = _observed?.Record.HolderIdentity ?? "",
                    Term = _observed?.Record.LeaseTransitions,
                    LeaseUid = _observed?.Uid ?? "",
                };
            }

            _state.Publish(status);
        }
    }

    private async Task WaitAsync(long wakeAt, CancellationToken ct)
    {
        _pendingRead ??= _inbox.Reader.WaitToReadAsync(ct).AsTask();
        var delay = _time.Until(wakeAt);
        if (!_pendingRead.IsCompleted && delay > TimeSpan.Zero)
        {
            using var delayCts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            await Task.WhenAny(_pendingRead, Task.Delay(delay, _time, delayCts.Token));
            await delayCts.CancelAsync();
        }

        if (_pendingRead.IsCompleted)
        {
            var read = _pendingRead;
            _pendingRead = null;
            await read;
        }

        ct.ThrowIfCancellationRequested();
    }

    private async Task WatchLoopAsync(CancellationToken ct)
    {
        var backoff = WatchBackoffInitial;
        while (!ct.IsCancellationRequested)
        {
            var healthy = false;
            var connectedAt = 0L;
            try
            {
                await foreach (var lease in _store.WatchAsync(ct))
                {
                    if (!healthy)
                    {
                        healthy = true;
                        connectedAt = _time.GetTimestamp();
                        _inbox.Writer.TryWrite(new WatchHealth(true));
                        LogWatchConnected(_logger);
                    }

                    _inbox.Writer.TryWrite(new Observed(lease));
                }

                LogWatchEnded(_logger);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                var reason = e is LeaseStoreException lse ? lse.Reason : LeaseStoreFailure.Unavailable;
                _metrics.RequestCompleted("watch", "observe", reason, TimeSpan.Zero);
                LogWatchFailed(_logger, reason, Clip(e.Message), backoff.TotalMilliseconds);
            }

            if (healthy)
            {
                _inbox.Writer.TryWrite(new WatchHealth(false));

                // Only a watch that stayed up a while starts the backoff over: one that connects
                // and fails at once (forbidden, dropped by a proxy) must not be retried in a loop.
                if (_time.GetElapsedTime(connectedAt) >= _options.LeaseDuration)
                {
                    backoff = WatchBackoffInitial;
                }
            }

            try
            {
                await Task.Delay(Jittered(backoff), _time, ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, WatchBackoffMax.Ticks));
        }
    }

    /// <summary>A store's error text can carry what a server sent; a log line gets a bounded part of it.</summary>
    private static string Clip(string message) =>
        message.Length <= 512 ? message : string.Concat(message.AsSpan(0, 512), $"… ({message.Length} characters)");

    /// <summary>
    /// A record whose holder is longer than any identity we accept is invalid (a hostile or broken
    /// writer): it is kept as a claim by an unnamed holder, waited out and taken over like any
    /// other, but its holder never reaches a log line, a status body or a metric label.
    /// </summary>
    private static LeaseSnapshot? Bounded(LeaseSnapshot? lease) =>
        lease is { Record.HolderIdentity.Length: > LeaseRecord.MaxHolderIdentityLength }
            ? lease with { Record = lease.Record with { HolderIdentity = $"<invalid holderIdentity of {lease.Record.HolderIdentity.Length} characters>" } }
            : lease;

    /// <summary>Up to 20 % later, so candidates that failed together do not retry together.</summary>
    private static TimeSpan Jittered(TimeSpan value) => value * (1 + (Random.Shared.NextDouble() * 0.2));

    /// <summary>Kubernetes MicroTime has microsecond precision; write exactly what will be read back.</summary>
    private static DateTimeOffset Truncate(DateTimeOffset value) =>
        new(value.UtcTicks - (value.UtcTicks % 10), TimeSpan.Zero);

    private enum Outcome
    {
        Leading,
        Held,
        Conflict,
        Failed,
    }

    private readonly record struct StoreResult(LeaseSnapshot? Lease, LeaseStoreFailure? Failure);

    private abstract record Message;

    private sealed record Observed(LeaseSnapshot? Lease) : Message;

    private sealed record WatchHealth(bool Healthy) : Message;

    private sealed record GateChanged(bool Open) : Message;

    private sealed record Resign(TimeSpan HoldOff, bool Stop, TaskCompletionSource Done, Func<CancellationToken, Task>? BeforeRelease) : Message;
}
