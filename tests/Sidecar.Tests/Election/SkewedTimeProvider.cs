using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Election;

/// <summary>
/// A candidate's clock: monotonic time and timers from a shared <see cref="FakeTimeProvider"/>, and
/// a wall clock that can be set off by any amount, forwards or backwards, as a bad NTP step would.
/// </summary>
internal sealed class SkewedTimeProvider(FakeTimeProvider inner) : TimeProvider
{
    public TimeSpan WallClockOffset { get; set; }

    public override DateTimeOffset GetUtcNow() => inner.GetUtcNow() + WallClockOffset;

    public override long GetTimestamp() => inner.GetTimestamp();

    public override long TimestampFrequency => inner.TimestampFrequency;

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
        inner.CreateTimer(callback, state, dueTime, period);
}
