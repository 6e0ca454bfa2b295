using System.Diagnostics;
using LeaderSidecar.Election;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Election;

/// <summary>One candidate under test: an elector, its published state and its own wall clock.</summary>
internal sealed class Candidate : IDisposable
{
    public Candidate(string identity, ILeaseStore store, FakeTimeProvider time, ElectionOptions? options = null, CampaignGate? gate = null)
    {
        Clock = new SkewedTimeProvider(time);
        Options = (options ?? new ElectionOptions { Identity = identity, LeaseName = "app" }) with { Identity = identity };
        State = new LeadershipState(Options, Clock, NullLogger<LeadershipState>.Instance);
        Gate = gate;
        Elector = new LeaderElector(store, Options, State, Clock, NullLogger<LeaderElector>.Instance, Metrics, gate);
    }

    /// <summary>Whether this candidate is fit to lead, when the test gives it a gate.</summary>
    public CampaignGate? Gate { get; }

    public SkewedTimeProvider Clock { get; }

    public ElectionOptions Options { get; }

    public LeadershipState State { get; }

    public LeaderElector Elector { get; }

    public CountingMetrics Metrics { get; } = new();

    public LeadershipStatus Status => State.Current;

    public Task? Loop { get; private set; }

    /// <summary>One compare-and-swap step, then publish, as the loop does.</summary>
    public async Task<bool> StepAsync()
    {
        var leading = await Elector.TryAcquireOrRenewAsync(CancellationToken.None);
        Elector.PublishView();
        return leading;
    }

    /// <summary>Feeds what the store holds now, as a watch event would.</summary>
    public void See(LeaseSnapshot? lease)
    {
        Elector.ObserveChange(lease);
        Elector.PublishView();
    }

    private readonly CancellationTokenSource _crash = new();

    public void Start() => Loop = Elector.RunAsync(_crash.Token);

    /// <summary>Ends the loop without releasing, as a crash would (the surfaces stop, the lease stays).</summary>
    public async Task CrashAsync()
    {
        await _crash.CancelAsync();
        await Loop!;
    }

    public void Dispose()
    {
        _crash.Cancel();
        _crash.Dispose();
        Elector.Dispose();
        State.Dispose();
    }
}

internal sealed class CountingMetrics : IElectionMetrics
{
    private int _slowPath;
    private int _termExhausted;
    private int _stoodAside;

    public int SlowPathCount => Volatile.Read(ref _slowPath);

    public void RequestCompleted(string verb, string purpose, LeaseStoreFailure? failure, TimeSpan duration)
    {
    }

    public void SlowPath() => Interlocked.Increment(ref _slowPath);

    public int TermExhaustedCount => Volatile.Read(ref _termExhausted);

    public void TermExhausted() => Interlocked.Increment(ref _termExhausted);

    public int StoodAsideCount => Volatile.Read(ref _stoodAside);

    public void StoodAside() => Interlocked.Increment(ref _stoodAside);
}

internal static class Eventually
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(5);

    /// <summary>
    /// Moves the fake clock by <paramref name="total"/> in steps of <paramref name="step"/>, giving the
    /// candidates a moment to react after each, and checks <paramref name="invariant"/> every time:
    /// for what must hold all along, where there is no condition to wait for.
    /// </summary>
    public static async Task HoldsWhileAdvancing(FakeTimeProvider time, TimeSpan total, TimeSpan step, Action invariant)
    {
        for (var moved = TimeSpan.Zero; moved < total; moved += step)
        {
            time.Advance(step);
            await Task.Delay(Poll);
            invariant();
        }
    }

    /// <summary>
    /// Waits, with a real-time deadline, until <paramref name="condition"/> holds. With a fake clock,
    /// advances it by <paramref name="step"/> each time the candidates have had a moment to react.
    /// </summary>
    public static async Task Holds(Func<bool> condition, string what, FakeTimeProvider? time = null, TimeSpan? step = null)
    {
        var waited = Stopwatch.StartNew();
        while (!condition())
        {
            if (waited.Elapsed > Deadline)
            {
                Assert.Fail($"timed out after {Deadline.TotalSeconds} s waiting until {what}");
            }

            await Task.Delay(Poll);
            time?.Advance(step ?? TimeSpan.FromMilliseconds(100));
        }
    }
}
