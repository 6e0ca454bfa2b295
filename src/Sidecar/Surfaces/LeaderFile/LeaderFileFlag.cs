using System.Text.Json;
using LeaderSidecar.Election;

namespace LeaderSidecar.Surfaces.LeaderFile;

/// <summary>
/// The file flag (<c>--leader-file</c>): the file exists only while this replica leads and holds the
/// JSON status with <c>validUntil</c>, replaced atomically (a temporary file with a random name,
/// created exclusively, then renamed over it) on every renew. A crashed sidecar cannot remove it:
/// apps that need strict safety check <c>validUntil</c> or ask the HTTP/gRPC surfaces.
/// </summary>
/// <remarks>
/// <para>
/// <see cref="Apply"/> runs on the election's publish path, inside the status lock, so it never
/// touches the disk: it records the newest status and wakes one dedicated writer thread, which
/// writes the newest wanted state (intermediate ones are skipped). A stalled disk stalls only that
/// thread; renews and every other surface go on.
/// </para>
/// <para>
/// The writer writes a leader status only while its claim lasts. A status whose claim deadline has
/// passed by the time the writer takes it removes the file instead. A write that began before the
/// disk stalled cannot be taken back while the disk hangs: that file says LEADER until the disk
/// answers, and its <c>validUntil</c> is what tells an app it no longer counts.
/// </para>
/// <para>
/// The release must wait for the removal (<see cref="WaitRemovedAsync"/>), so no other replica can
/// lead while this file still claims leadership.
/// </para>
/// </remarks>
internal sealed partial class LeaderFileFlag : IDisposable
{
    private static readonly System.Buffers.SearchValues<char> LowerHex = System.Buffers.SearchValues.Create("0123456789abcdef");

    private readonly string _path;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Action<LeadershipStatus>? _beforeDiskIo;
    private readonly object _gate = new();
    private LeadershipStatus? _wanted;
    private long? _onDiskDeadline;
    private TaskCompletionSource _removed = NewSignal();
    private bool _disposed;

    public LeaderFileFlag(string path, TimeProvider time, ILogger<LeaderFileFlag> logger)
        : this(path, time, logger, beforeDiskIo: null)
    {
    }

    /// <param name="path">The flag file.</param>
    /// <param name="time">The clock of the claim deadlines.</param>
    /// <param name="logger">Where write failures go.</param>
    /// <param name="beforeDiskIo">For tests: called on the writer thread before it writes or removes the file for a status; may block, as a stalled disk would.</param>
    internal LeaderFileFlag(string path, TimeProvider time, ILogger<LeaderFileFlag> logger, Action<LeadershipStatus>? beforeDiskIo)
    {
        _path = path;
        _time = time;
        _logger = logger;
        _beforeDiskIo = beforeDiskIo;
        // A thread of its own, not the pool's: a hung write(2) must not take a pool thread the
        // election loop and the surfaces need.
        new Thread(RunWriter) { IsBackground = true, Name = "leader-file writer" }.Start();
    }

    /// <summary>Checks the directory exists and removes a file (and temporary files) left by an earlier run.</summary>
    /// <returns><see langword="null"/> when usable, else one line naming the problem.</returns>
    public string? Prepare()
    {
        var directory = Path.GetDirectoryName(_path);
        if (directory is null || !Directory.Exists(directory))
        {
            return $"leader file directory {directory} does not exist (--leader-file)";
        }

        try
        {
            File.Delete(_path);
            var prefix = TemporaryPrefix(_path);
            foreach (var leftover in Directory.EnumerateFiles(directory, Path.GetFileName(prefix) + "*"))
            {
                if (IsTemporaryOf(leftover, prefix))
                {
                    File.Delete(leftover);
                }
            }

            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"cannot remove leftover leader file {_path}: {e.Message} (--leader-file)";
        }
    }

    /// <summary>
    /// Makes the file follow <paramref name="status"/>, soon: records it as the newest wanted state
    /// and wakes the writer. Never blocks on the disk, never throws.
    /// </summary>
    public void Apply(LeadershipStatus status)
    {
        lock (_gate)
        {
            _wanted = status;
            Monitor.Pulse(_gate);
        }
    }

    /// <summary>
    /// Waits until no file written by this process can claim leadership any more: it has been
    /// removed, or the claim deadline of the last LEADER status written (its <c>validUntil</c>) has
    /// passed, or none was ever written. Call it after the step-down was published and before the
    /// lease is released. Bounded by that deadline; throws only for <paramref name="cancellationToken"/>.
    /// </summary>
    public async Task WaitRemovedAsync(CancellationToken cancellationToken)
    {
        long deadline;
        Task removed;
        lock (_gate)
        {
            if (_onDiskDeadline is not { } onDisk)
            {
                return;
            }

            deadline = onDisk;
            removed = _removed.Task;
        }

        var remaining = _time.GetElapsedTime(_time.GetTimestamp(), deadline);
        if (remaining > TimeSpan.Zero)
        {
            using var expired = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            await Task.WhenAny(removed, Task.Delay(remaining, _time, expired.Token));
            await expired.CancelAsync();
            cancellationToken.ThrowIfCancellationRequested();
        }

        if (!removed.IsCompleted)
        {
            LogRemovalOverdue(_logger, _path);
        }
    }

    /// <summary>Lets the writer finish what is wanted and end; does not wait for it (the disk may hang).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            Monitor.Pulse(_gate);
        }
    }

    /// <summary>
    /// A temporary file name beside <paramref name="path"/> that nobody can guess: a GUID's 122
    /// random bits, from the system's generator without loading OpenSSL.
    /// </summary>
    internal static string TemporaryPath(string path) =>
        $"{TemporaryPrefix(path)}{Guid.NewGuid():N}.tmp";

    /// <summary>
    /// Writes <paramref name="content"/> to <paramref name="temporary"/>, which must not exist (so a
    /// link planted there is never followed), then renames it over <paramref name="path"/>: readers
    /// see the old file or the new one, never a part.
    /// </summary>
    internal static void WriteAtomically(string path, string temporary, byte[] content)
    {
        var created = false;
        try
        {
            using (var file = File.OpenHandle(temporary, FileMode.CreateNew, FileAccess.Write))
            {
                created = true;
                RandomAccess.Write(file, content, 0);
            }

            File.Move(temporary, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (created)
            {
                TryDelete(temporary);
            }

            throw;
        }
    }

    private void RunWriter()
    {
        while (true)
        {
            LeadershipStatus status;
            bool lead;
            lock (_gate)
            {
                while (_wanted is null)
                {
                    if (_disposed)
                    {
                        return;
                    }

                    Monitor.Wait(_gate);
                }

                status = _wanted;
                _wanted = null;
                lead = status.IsLeader && status.ClaimDeadline is { } deadline && _time.GetTimestamp() < deadline;
                if (lead)
                {
                    if (_onDiskDeadline is null)
                    {
                        _removed = NewSignal();
                    }

                    // From now on this claim may be on disk, whatever becomes of the write.
                    _onDiskDeadline = status.ClaimDeadline;
                }
            }

            if (status.IsLeader && !lead)
            {
                LogClaimOverBeforeWrite(_logger, _path, status.Term);
            }

            if (WriteOrRemove(status, lead) && !lead)
            {
                lock (_gate)
                {
                    _onDiskDeadline = null;
                    _removed.TrySetResult();
                }
            }
        }
    }

    private bool WriteOrRemove(LeadershipStatus status, bool lead)
    {
        try
        {
            _beforeDiskIo?.Invoke(status);
            if (lead)
            {
                WriteAtomically(_path, TemporaryPath(_path), JsonSerializer.SerializeToUtf8Bytes(StatusDocument.From(status, _time), SurfaceJsonContext.Default.StatusDocument));
            }
            else
            {
                File.Delete(_path);
            }

            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogFileFailed(_logger, _path, e.Message);
            return false;
        }
    }

    private static string TemporaryPrefix(string path) =>
        Path.Combine(Path.GetDirectoryName(path) ?? "", $".{Path.GetFileName(path)}.");

    private static bool IsTemporaryOf(string candidate, string prefix) =>
        candidate.StartsWith(prefix, StringComparison.Ordinal)
        && candidate.EndsWith(".tmp", StringComparison.Ordinal)
        && candidate.Length == prefix.Length + 32 + ".tmp".Length
        && !candidate.AsSpan(prefix.Length, 32).ContainsAnyExcept(LowerHex);

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    [LoggerMessage(EventId = 400, EventName = "LeaderFileFailed", Level = LogLevel.Error,
        Message = "Could not update the leader file {Path}: {Reason}")]
    private static partial void LogFileFailed(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 401, EventName = "LeaderFileClaimOver", Level = LogLevel.Warning,
        Message = "The claim of term {Term} ran out before the leader file {Path} could be written (the disk is slow); removing it instead")]
    private static partial void LogClaimOverBeforeWrite(ILogger logger, string path, long? term);

    [LoggerMessage(EventId = 402, EventName = "LeaderFileRemovalOverdue", Level = LogLevel.Warning,
        Message = "The leader file {Path} was not removed before its validUntil passed (the disk is slow); releasing anyway")]
    private static partial void LogRemovalOverdue(ILogger logger, string path);
}
