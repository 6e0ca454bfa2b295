using LeaderSidecar.Election;
using LeaderSidecar.Surfaces;
using LeaderSidecar.Surfaces.Grpc;
using LeaderSidecar.Surfaces.Health;
using LeaderSidecar.Tests.Election;
using LeaderSidecar.Tests.EndToEnd;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Surfaces.Health;

/// <summary>Liveness on a fake clock: an outage is not a failure, a stuck process is.</summary>
public sealed class ProbesTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Liveness_fails_only_when_the_election_loop_is_stuck_in_one_step()
    {
        var time = new FakeTimeProvider();
        var options = new ElectionOptions { Identity = "me", LeaseName = "app" };
        var store = new WedgeableStore(new InMemoryLeaseStore());
        var state = new LeadershipState(options, time, NullLogger<LeadershipState>.Instance);
        using var elector = new LeaderElector(store, options, state, time, NullLogger<LeaderElector>.Instance);
        using var drain = new Drain(TimeSpan.Zero, state, new WatchStreams(), time, NullLogger<Drain>.Instance);
        var probes = new Probes(state, elector, options, drain, time);
        using var cts = new CancellationTokenSource();
        var run = elector.RunAsync(cts.Token);
        await Poll.UntilAsync(() => Task.FromResult(state.Current.IsLeader), Deadline, "leading");
        Assert.Null(probes.Liveness());

        // A store that answers nothing, but honours timeouts, is an outage: the loop cycles.
        store.Inner.Hang = true;
        for (var i = 0; i < 20; i++)
        {
            time.Advance(options.RetryPeriod);
            await Poll.UntilAsync(() => Task.FromResult(elector.BusyFor <= options.RequestTimeout * 3), Deadline, "the loop cycles");
            Assert.Null(probes.Liveness());
        }

        // A request that ignores its timeout wedges the loop in one step.
        store.Inner.Hang = false;
        store.Wedged = true;
        await Poll.UntilAsync(
            () =>
            {
                if (store.WedgedCalls > 0)
                {
                    return Task.FromResult(true);
                }

                time.Advance(TimeSpan.FromMilliseconds(100));
                return Task.FromResult(false);
            },
            Deadline,
            "a wedged request");
        Assert.Null(probes.Liveness());
        time.Advance(probes.WedgedAfter + options.RetryPeriod);
        Assert.Contains("stuck in one step", probes.Liveness(), StringComparison.Ordinal);
        Assert.False(state.Current.IsLeader);

        store.Unwedge();
        await cts.CancelAsync();
        await run;
    }

    /// <summary>Delegates to a store, or never answers, ignoring cancellation (a wedged process).</summary>
    private sealed class WedgeableStore(InMemoryLeaseStore inner) : ILeaseStore
    {
        private readonly TaskCompletionSource _unwedged = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _wedgedCalls;

        public InMemoryLeaseStore Inner => inner;

        public bool Wedged { get; set; }

        public int WedgedCalls => Volatile.Read(ref _wedgedCalls);

        public string Description => inner.Description;

        public void Unwedge() => _unwedged.TrySetResult();

        public async Task<LeaseSnapshot?> GetAsync(CancellationToken cancellationToken)
        {
            await WedgeAsync();
            return await inner.GetAsync(cancellationToken);
        }

        public async Task<LeaseSnapshot> CreateAsync(LeaseRecord record, CancellationToken cancellationToken)
        {
            await WedgeAsync();
            return await inner.CreateAsync(record, cancellationToken);
        }

        public async Task<LeaseSnapshot> UpdateAsync(LeaseSnapshot current, LeaseRecord record, CancellationToken cancellationToken)
        {
            await WedgeAsync();
            return await inner.UpdateAsync(current, record, cancellationToken);
        }

        public IAsyncEnumerable<LeaseSnapshot?> WatchAsync(CancellationToken cancellationToken) => inner.WatchAsync(cancellationToken);

        private Task WedgeAsync()
        {
            if (!Wedged)
            {
                return Task.CompletedTask;
            }

            Interlocked.Increment(ref _wedgedCalls);
            return _unwedged.Task;
        }
    }
}
