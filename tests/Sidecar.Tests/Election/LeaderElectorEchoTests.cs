using System.Runtime.CompilerServices;
using LeaderSidecar.Election;
using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Election;

/// <summary>
/// The loop against a store whose answers and watch echoes take time on the fake clock, as a real
/// API server's do: an echo may arrive after the answer to the next write.
/// </summary>
public sealed class LeaderElectorEchoTests : IDisposable
{
    private static readonly DateTimeOffset Start = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
    private readonly FakeTimeProvider _time = new(Start);
    private readonly InMemoryLeaseStore _inner = new();
    private readonly List<Candidate> _candidates = [];

    [Fact]
    public async Task Late_echoes_of_the_leaders_own_writes_do_not_start_a_write_loop()
    {
        // The watch opens before the first write and its first item arrives after that write's answer.
        var store = new SlowStore(_inner, _time, writeTime: TimeSpan.FromMilliseconds(5), firstItemDelay: TimeSpan.FromMilliseconds(20), echoDelay: TimeSpan.FromMilliseconds(32));
        var a = Run("a", store);
        await DriveAsync(TimeSpan.FromMilliseconds(100), () => a.Status.IsLeader);
        Assert.True(a.Status.IsLeader);
        var writes = _inner.Requests("create") + _inner.Requests("update");

        // One retry period minus a little: at most the one verifying renew the first (older)
        // watch item may ask for, and no renew of the period yet.
        await DriveAsync(TimeSpan.FromMilliseconds(1800), () => false);

        var extra = _inner.Requests("create") + _inner.Requests("update") - writes;
        Assert.True(extra <= 1, $"{extra} writes in 1.8 s of a quiet lease");
        Assert.True(a.Status.IsLeader);
    }

    [Fact]
    public async Task A_write_that_landed_unanswered_is_recognised_after_a_second_attempt()
    {
        // The acquire lands but its answer is lost; the watch is healthy but its echo is slow, so
        // the next attempt is made over the old version, conflicts, and reads the first one back.
        _inner.Overwrite(new LeaseRecord("", 1, Start, Start, 3));
        var store = new SlowStore(_inner, _time, writeTime: TimeSpan.FromMilliseconds(5), firstItemDelay: TimeSpan.Zero, echoDelay: TimeSpan.FromSeconds(10));
        _inner.LoseAnswers = true;
        var b = Run("b", store);
        await DriveAsync(TimeSpan.FromMilliseconds(500), () => _inner.Lease!.Record.HolderIdentity == "b");
        Assert.Equal("b", _inner.Lease!.Record.HolderIdentity);
        Assert.False(b.Status.IsLeader);
        _inner.LoseAnswers = false;

        // Well within a lease duration: the record read back is our own unanswered attempt.
        await DriveAsync(TimeSpan.FromSeconds(5), () => b.Status.IsLeader, stepMilliseconds: 10);
        Assert.True(b.Status.IsLeader, "b waited out its own record");
        Assert.Equal(4, b.Status.Term);
    }

    private Candidate Run(string identity, ILeaseStore store)
    {
        var candidate = new Candidate(identity, store, _time);
        _candidates.Add(candidate);
        candidate.Start();
        return candidate;
    }

    /// <summary>Moves the fake clock in small steps, giving the loop a moment after each, until <paramref name="done"/> or <paramref name="span"/>.</summary>
    private async Task DriveAsync(TimeSpan span, Func<bool> done, int stepMilliseconds = 1)
    {
        var step = TimeSpan.FromMilliseconds(stepMilliseconds);
        for (var elapsed = TimeSpan.Zero; elapsed < span && !done(); elapsed += step)
        {
            _time.Advance(step);
            await Task.Delay(1);
        }
    }

    public void Dispose()
    {
        foreach (var candidate in _candidates)
        {
            candidate.Dispose();
        }
    }

    /// <summary>
    /// Writes land <c>writeTime</c> after they are sent, and are answered then. A watch's first
    /// item (the state when it was opened) arrives <c>firstItemDelay</c> after the opening, every
    /// later one <c>echoDelay</c> after its write landed.
    /// </summary>
    private sealed class SlowStore(InMemoryLeaseStore inner, FakeTimeProvider time, TimeSpan writeTime, TimeSpan firstItemDelay, TimeSpan echoDelay) : ILeaseStore
    {
        public string Description => inner.Description;

        public Task<LeaseSnapshot?> GetAsync(CancellationToken cancellationToken) => inner.GetAsync(cancellationToken);

        public async Task<LeaseSnapshot> CreateAsync(LeaseRecord record, CancellationToken cancellationToken)
        {
            await Task.Delay(writeTime, time, cancellationToken);
            return await inner.CreateAsync(record, cancellationToken);
        }

        public async Task<LeaseSnapshot> UpdateAsync(LeaseSnapshot current, LeaseRecord record, CancellationToken cancellationToken)
        {
            await Task.Delay(writeTime, time, cancellationToken);
            return await inner.UpdateAsync(current, record, cancellationToken);
        }

        public async IAsyncEnumerable<LeaseSnapshot?> WatchAsync([EnumeratorCancellation] CancellationToken cancellationToken)
        {
            // Opened now, synchronously: the first item is the state before anything the caller
            // writes next.
            var items = System.Threading.Channels.Channel.CreateUnbounded<(long DueAt, LeaseSnapshot? Lease)>();
            var pump = PumpAsync();

            await foreach (var (dueAt, lease) in items.Reader.ReadAllAsync(cancellationToken))
            {
                var wait = time.GetElapsedTime(time.GetTimestamp(), dueAt);
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, time, cancellationToken);
                }

                yield return lease;
            }

            await pump;

            async Task PumpAsync()
            {
                var first = true;
                await foreach (var lease in inner.WatchAsync(cancellationToken))
                {
                    var delay = first ? firstItemDelay : echoDelay;
                    first = false;
                    items.Writer.TryWrite((time.GetTimestamp() + (long)(delay.TotalSeconds * time.TimestampFrequency), lease));
                }
            }
        }
    }
}
