using System.Text.Json;

namespace LeaderSidecar.Tests.Safety;

/// <summary>One role change of one daemon process, as its RoleChanged (event 100) log line says.</summary>
/// <param name="At">CLOCK_MONOTONIC timestamp (<see cref="System.Diagnostics.Stopwatch.GetTimestamp"/>), shared by every process on the host.</param>
internal sealed record RoleChange(long At, string From, string To, string Holder, long? Term, string LeaseUid, long Revision);

/// <summary>
/// What one daemon process claimed over its life: its role changes in order and, once it is gone,
/// when it was seen to end. Several processes may share an identity (a restart); each has its own
/// history, because two processes of one identity both claiming is as wrong as two identities.
/// </summary>
internal sealed class LeadershipHistory
{
    public LeadershipHistory(string process, string identity, IReadOnlyList<RoleChange> changes, long? endedAt)
    {
        Process = process;
        Identity = identity;
        Changes = changes;
        EndedAt = endedAt;
    }

    /// <summary>A label unique to this process, such as <c>r1#3</c> (identity r1, third process).</summary>
    public string Process { get; }

    public string Identity { get; }

    public IReadOnlyList<RoleChange> Changes { get; }

    /// <summary>When the process was confirmed gone (SIGKILL reaped, or exit), or null while it runs.</summary>
    public long? EndedAt { get; }

    /// <summary>Reads the RoleChanged events out of a daemon's JSON log lines; other lines are skipped.</summary>
    public static LeadershipHistory Parse(string process, string identity, IEnumerable<string> logLines, long? endedAt)
    {
        var changes = new List<RoleChange>();
        foreach (var line in logLines)
        {
            if (!line.StartsWith('{') || !line.Contains("\"EventId\":100,", StringComparison.Ordinal))
            {
                continue;
            }

            using var json = JsonDocument.Parse(line);
            var state = json.RootElement.GetProperty("State");
            var term = state.GetProperty("Term");
            changes.Add(new RoleChange(
                state.GetProperty("MonotonicTimestamp").GetInt64(),
                state.GetProperty("From").GetString()!,
                state.GetProperty("To").GetString()!,
                state.GetProperty("Holder").GetString() ?? "",
                term.ValueKind == JsonValueKind.Number ? term.GetInt64() : null,
                state.GetProperty("LeaseUid").GetString() ?? "",
                state.GetProperty("Revision").GetInt64()));
        }

        return new LeadershipHistory(process, identity, changes, endedAt);
    }

    /// <summary>
    /// The intervals in which this process said "leader". One still open ends when the process was
    /// seen to end (a killed process logs nothing more), else at <paramref name="openUntil"/>.
    /// </summary>
    public IEnumerable<LeaderInterval> LeaderIntervals(long openUntil)
    {
        RoleChange? start = null;
        foreach (var change in Changes)
        {
            if (change.To == "Leader" && start is null)
            {
                start = change;
            }
            else if (change.To == "Leader" && start is not null)
            {
                // Still leading, under a new term or a re-created lease: a new claim from here.
                yield return new LeaderInterval(Process, Identity, start.At, change.At, start.Term, start.LeaseUid);
                start = change;
            }
            else if (change.To != "Leader" && start is not null)
            {
                yield return new LeaderInterval(Process, Identity, start.At, change.At, start.Term, start.LeaseUid);
                start = null;
            }
        }

        if (start is not null)
        {
            yield return new LeaderInterval(Process, Identity, start.At, EndedAt ?? openUntil, start.Term, start.LeaseUid);
        }
    }
}

/// <summary>A stretch of monotonic time in which one process said "leader", with the term it reported.</summary>
internal sealed record LeaderInterval(string Process, string Identity, long Start, long End, long? Term, string LeaseUid)
{
    public bool IsEmpty => End <= Start;

    public bool Overlaps(LeaderInterval other) =>
        !IsEmpty && !other.IsEmpty && Start < other.End && other.Start < End;
}
