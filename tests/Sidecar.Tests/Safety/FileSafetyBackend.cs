using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;

namespace LeaderSidecar.Tests.Safety;

/// <summary>
/// The file backend in a private temporary directory shared by every replica. Its store faults are
/// hand edits of the lease file, made as the file backend's own writers make them (under the
/// <c>.lock</c> file's <c>flock</c>, a new file renamed over the old one, the version counted on):
/// deleted, rewritten to a stranger or a follower, or replaced by garbage.
/// </summary>
internal sealed class FileSafetyBackend : ISafetyBackend
{
    private static readonly TimeSpan LockWait = TimeSpan.FromSeconds(2);
    private readonly TempDirectory _dir = new();

    public IReadOnlySet<FaultKind> Faults { get; } = new HashSet<FaultKind> { FaultKind.DeleteLease, FaultKind.RewriteLease, FaultKind.GarbageLease };

    private string LeaseFile => _dir.File($"{SafetyCluster.Namespace}_{SafetyCluster.LeaseName}.json");

    public IEnumerable<string> Arguments(SafetyCluster.Replica replica) => ["--backend", "file", "--lease-dir", _dir.Path];

    public Task InjectAsync(FaultKind kind, FaultRound round) =>
        throw new ArgumentOutOfRangeException(nameof(kind), kind, "not a fault of the file backend");

    public Task<string> DeleteLeaseAsync() => EditAsync("deleted", text =>
    {
        if (text is null)
        {
            return "lease deleted (it was not there)";
        }

        File.Delete(LeaseFile);
        return "lease file deleted";
    });

    public Task<string> RewriteLeaseAsync(string holder, bool newTerm) => EditAsync($"rewritten to {holder}", text =>
    {
        if (text is null)
        {
            return $"lease not rewritten to {holder}: it does not exist";
        }

        if (HandEdit.Parse(text) is not { } document || document["spec"] is not JsonObject spec || document["resourceVersion"]?.GetValue<long>() is not { } version)
        {
            return $"lease not rewritten to {holder}: it holds garbage";
        }

        HandEdit.Rewrite(spec, holder, newTerm);
        document["resourceVersion"] = version + 1;
        Replace(document.ToJsonString());
        return HandEdit.Rewritten(holder, newTerm) + $" (version {(version + 1).ToString(CultureInfo.InvariantCulture)})";
    });

    public Task<string> PutGarbageAsync(string garbage) => EditAsync("overwritten with garbage", _ =>
    {
        Replace(garbage);
        return $"lease file overwritten with garbage '{garbage}'";
    });

    public Task<string> ClearGarbageAsync(string garbage) => EditAsync("cleared of garbage", text =>
    {
        if (text != garbage)
        {
            return "garbage already gone";
        }

        File.Delete(LeaseFile);
        return "garbage deleted";
    });

    public ValueTask DisposeAsync()
    {
        _dir.Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// Runs <paramref name="edit"/> on the file's text (null when absent) while holding the lock
    /// every writer takes. A writer stopped (SIGSTOP) while it holds the lock blocks everyone;
    /// the edit then gives up and says so.
    /// </summary>
    private async Task<string> EditAsync(string what, Func<string?, string> edit)
    {
        var waited = Stopwatch.StartNew();
        while (true)
        {
            FileStream held;
            try
            {
                // FileShare.None is an exclusive flock() on Unix, as the file backend takes it.
                held = new FileStream(LeaseFile + ".lock", FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (waited.Elapsed < LockWait)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(2));
                continue;
            }
            catch (IOException)
            {
                return $"lease not {what}: its lock stayed held for {LockWait.TotalSeconds:0} s";
            }

            using (held)
            {
                return edit(File.Exists(LeaseFile) ? await File.ReadAllTextAsync(LeaseFile) : null);
            }
        }
    }

    /// <summary>Replaces the lease file as the backend does: a new file, renamed over the old one.</summary>
    private void Replace(string text)
    {
        var temporary = _dir.File($".{Path.GetFileName(LeaseFile)}.{Guid.NewGuid():N}.tmp");
        File.WriteAllText(temporary, text);
        File.Move(temporary, LeaseFile, overwrite: true);
    }
}
