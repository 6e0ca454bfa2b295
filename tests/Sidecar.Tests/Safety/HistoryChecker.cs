using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace LeaderSidecar.Tests.Safety;

/// <summary>A moment the nemesis wants on the merged timeline: a fault injected or healed.</summary>
internal sealed record NemesisEvent(long At, string What);

/// <summary>A quiet stretch after the faults of a round healed, in which a leader must appear and stay.</summary>
/// <param name="HealedAt">Every fault of the round was healed at this monotonic instant.</param>
/// <param name="QuietUntil">The next round's faults began here (or the run ended).</param>
internal sealed record HealWindow(int Round, long HealedAt, long QuietUntil);

/// <summary>
/// Merges the histories of every daemon process of one lease and judges them: no two processes said
/// "leader" at one instant, terms never went backwards, and after every heal a leader appeared soon.
/// </summary>
/// <remarks>
/// Timestamps are CLOCK_MONOTONIC, which every process on one host shares, so the histories of
/// several processes are one timeline. Each daemon stamps a change to leader before anyone can see
/// it and a change away after (a claim that ran out ends at its deadline), so an interval here is
/// never shorter than the leadership any surface showed: an overlap found is real, and none found
/// means none was visible — except for a change a SIGKILLed process logged but never flushed.
/// </remarks>
internal static class HistoryChecker
{
    public static SafetyReport Check(
        IReadOnlyList<LeadershipHistory> histories,
        IReadOnlyList<HealWindow> heals,
        IReadOnlyList<NemesisEvent> events,
        long runStart,
        long runEnd)
    {
        var intervals = histories
            .SelectMany(h => h.LeaderIntervals(runEnd))
            .Where(i => !i.IsEmpty)
            .OrderBy(i => i.Start)
            .ToList();

        var overlaps = new List<(LeaderInterval First, LeaderInterval Second)>();
        for (var i = 0; i < intervals.Count; i++)
        {
            for (var j = i + 1; j < intervals.Count && intervals[j].Start < intervals[i].End; j++)
            {
                if (intervals[i].Process != intervals[j].Process && intervals[i].Overlaps(intervals[j]))
                {
                    overlaps.Add((intervals[i], intervals[j]));
                }
            }
        }

        var termProblems = new List<string>();
        foreach (var lease in intervals.GroupBy(i => i.LeaseUid))
        {
            LeaderInterval? previous = null;
            foreach (var interval in lease)
            {
                if (interval.Term is null)
                {
                    termProblems.Add($"{interval.Process} led with no term at {Ms(interval.Start - runStart)}");
                }
                else if (previous is not null && interval.Term < previous.Term)
                {
                    termProblems.Add($"term went back from {previous.Term} ({previous.Process}) to {interval.Term} ({interval.Process}) at {Ms(interval.Start - runStart)}");
                }
                else if (previous is not null && interval.Process != previous.Process && interval.Term == previous.Term)
                {
                    termProblems.Add($"{interval.Process} led with the term {interval.Term} of {previous.Process} at {Ms(interval.Start - runStart)}: a new holder must have a new term");
                }

                previous = interval;
            }
        }

        var gaps = heals.Select(h => (h.Round, Gap: LongestGap(intervals, h.HealedAt, h.QuietUntil))).ToList();

        return new SafetyReport(
            intervals,
            overlaps,
            termProblems,
            gaps,
            Timeline(histories, events, runStart));
    }

    /// <summary>The longest stretch of <c>[from, until)</c> in which nobody said "leader".</summary>
    internal static TimeSpan LongestGap(IReadOnlyList<LeaderInterval> intervals, long from, long until)
    {
        var cursor = from;
        long longest = 0;
        foreach (var interval in intervals.Where(i => i.End > from && i.Start < until).OrderBy(i => i.Start))
        {
            longest = Math.Max(longest, interval.Start - cursor);
            cursor = Math.Max(cursor, interval.End);
        }

        longest = Math.Max(longest, until - cursor);
        return Stopwatch.GetElapsedTime(0, Math.Max(0, longest));
    }

    private static string Timeline(IReadOnlyList<LeadershipHistory> histories, IReadOnlyList<NemesisEvent> events, long runStart)
    {
        var lines = histories
            .SelectMany(h => h.Changes.Select(c => (c.At, Line: $"{h.Process,-7} {c.From} -> {c.To}, holder '{c.Holder}', term {c.Term?.ToString(CultureInfo.InvariantCulture) ?? "-"}, uid {Short(c.LeaseUid)}")))
            .Concat(histories.Where(h => h.EndedAt is not null).Select(h => (At: h.EndedAt!.Value, Line: $"{h.Process,-7} ended")))
            .Concat(events.Select(e => (e.At, Line: $"nemesis {e.What}")))
            .OrderBy(l => l.At);
        var text = new StringBuilder();
        foreach (var (at, line) in lines)
        {
            text.Append(CultureInfo.InvariantCulture, $"{Ms(at - runStart),12}  {line}\n");
        }

        return text.ToString();
    }

    internal static string Ms(long ticks) =>
        string.Create(CultureInfo.InvariantCulture, $"{ticks * 1000.0 / Stopwatch.Frequency:0.000} ms");

    private static string Short(string uid) => uid.Length > 8 ? uid[..8] : uid;
}

/// <summary>What the checker found.</summary>
internal sealed record SafetyReport(
    IReadOnlyList<LeaderInterval> Intervals,
    IReadOnlyList<(LeaderInterval First, LeaderInterval Second)> Overlaps,
    IReadOnlyList<string> TermProblems,
    IReadOnlyList<(int Round, TimeSpan Gap)> Gaps,
    string Timeline)
{
    public TimeSpan WorstGap => Gaps.Count == 0 ? TimeSpan.Zero : Gaps.Max(g => g.Gap);

    /// <summary>Every overlap, described with both processes, terms and how long it lasted.</summary>
    public IEnumerable<string> DescribeOverlaps(long runStart) => Overlaps.Select(o =>
        $"{o.First.Process} (term {o.First.Term}, {HistoryChecker.Ms(o.First.Start - runStart)} .. {HistoryChecker.Ms(o.First.End - runStart)}) and " +
        $"{o.Second.Process} (term {o.Second.Term}, {HistoryChecker.Ms(o.Second.Start - runStart)} .. {HistoryChecker.Ms(o.Second.End - runStart)}) " +
        $"both led for {HistoryChecker.Ms(Math.Min(o.First.End, o.Second.End) - o.Second.Start)}");
}
