namespace LeaderSidecar.Election;

/// <summary>Arithmetic on <see cref="TimeProvider.GetTimestamp"/> values.</summary>
internal static class Monotonic
{
    /// <summary>The timestamp <paramref name="span"/> after <paramref name="timestamp"/>.</summary>
    public static long Add(this TimeProvider time, long timestamp, TimeSpan span)
    {
        var ticks = span.Ticks * (double)time.TimestampFrequency / TimeSpan.TicksPerSecond;
        // Saturate instead of overflowing: a hostile lease duration must not wrap around into the past.
        return ticks >= long.MaxValue - timestamp ? long.MaxValue : timestamp + (long)ticks;
    }

    /// <summary>Time from now until <paramref name="timestamp"/>, zero if it has passed.</summary>
    public static TimeSpan Until(this TimeProvider time, long timestamp)
    {
        var now = time.GetTimestamp();
        if (timestamp <= now)
        {
            return TimeSpan.Zero;
        }

        // Cap so Task.Delay and timers accept it.
        var seconds = (timestamp - now) / (double)time.TimestampFrequency;
        return TimeSpan.FromSeconds(Math.Min(seconds, TimeSpan.FromDays(1).TotalSeconds));
    }
}
