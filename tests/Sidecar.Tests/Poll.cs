using System.Diagnostics;

namespace LeaderSidecar.Tests;

internal static class Poll
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(20);

    /// <summary>Checks <paramref name="condition"/> until it holds, failing after <paramref name="deadline"/>.</summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan deadline, string what)
    {
        var waited = Stopwatch.StartNew();
        while (!await condition())
        {
            if (waited.Elapsed > deadline)
            {
                Assert.Fail($"timed out after {deadline.TotalSeconds} s waiting for {what}");
            }

            await Task.Delay(Interval);
        }
    }
}
