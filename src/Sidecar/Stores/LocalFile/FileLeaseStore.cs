using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.Channels;
using LeaderSidecar.Election;

namespace LeaderSidecar.Stores.LocalFile;

/// <summary>
/// A lease in a JSON file on this host, for running without a cluster. Writes are compare-and-swap
/// under an exclusive OS file lock (<c>flock</c>) on a sibling <c>.lock</c> file, and replace the
/// record atomically (write a temporary file, then rename), so readers never see half a record.
/// Changes are noticed through inotify, with a slow poll as a safety net.
/// </summary>
/// <remarks>
/// The record is the Kubernetes Lease spec plus a <c>uid</c> and a <c>resourceVersion</c> counter.
/// Every candidate must use the same directory, so it must be on a local file system that honours
/// <c>flock</c> (not NFS). Whoever can write the directory decides who leads:
/// <see cref="LeaseDirectory"/> says which directories are accepted, and no file in it is ever
/// opened through a symbolic link or truncated in place.
/// </remarks>
internal sealed class FileLeaseStore : ILeaseStore, IDisposable
{
    private static readonly TimeSpan LockRetry = TimeSpan.FromMilliseconds(2);
    private static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(1);

    /// <summary>
    /// The most a lease file may hold. A record is a few hundred bytes, and this leaves ample room
    /// for long identities and hand-written files; anything bigger was not written by a candidate,
    /// and reading it whole (every second, by every candidate) would let one file exhaust memory.
    /// </summary>
    internal const int MaxRecordBytes = 64 * 1024;

    /// <summary>A uid is ours (a GUID) or a hand-made word; it is echoed in statuses and logs, so it is kept short and plain.</summary>
    private const int MaxUidLength = 64;

    private readonly string _directory;
    private readonly string _fileName;
    private readonly string _path;
    private readonly string _lockPath;
    private readonly TimeProvider _time;
    private readonly bool _chosenByUser;
    private FileStream? _identityLock;
    private int _pendingChangeWaits;
    private long _rereads;

    /// <param name="directory">Where the lease file lives.</param>
    /// <param name="namespace">The lease's namespace.</param>
    /// <param name="name">The lease's name.</param>
    /// <param name="time">The clock of the slow re-read and the lock retries.</param>
    /// <param name="chosenByUser">False for the default directory, which must be private; see <see cref="LeaseDirectory"/>.</param>
    public FileLeaseStore(string directory, string @namespace, string name, TimeProvider time, bool chosenByUser = true)
    {
        _directory = Path.GetFullPath(directory);
        // '_' can appear in neither a namespace nor a lease name, so the file name is unambiguous.
        _fileName = $"{@namespace}_{name}.json";
        _path = Path.Combine(_directory, _fileName);
        _lockPath = _path + ".lock";
        _time = time;
        _chosenByUser = chosenByUser;
    }

    public string Description => $"file lease {_path}";

    /// <summary>How many waits for a change notice are pending, over every watch: one per idle watch.</summary>
    internal int PendingChangeWaits => Volatile.Read(ref _pendingChangeWaits);

    /// <summary>How many times a watch re-read the file because its slow poll came due.</summary>
    internal long Rereads => Interlocked.Read(ref _rereads);

    /// <summary>
    /// Creates the directory (owner-only) if needed, checks that it can be trusted
    /// (<see cref="LeaseDirectory"/>) and proves it is writable, so a bad or squatted directory is a
    /// start-up error rather than an endless retry or a lease in someone else's hands.
    /// </summary>
    /// <returns><see langword="null"/> when usable, else one line naming the problem.</returns>
    public string? CheckUsable()
    {
        try
        {
            if (LeaseDirectory.Prepare(_directory, _chosenByUser) is { } refused)
            {
                return $"lease directory {_directory} is not usable: {refused}";
            }

            using (OpenFile(_lockPath, write: true))
            {
            }

            // A fresh random name created exclusively: it can be neither a planted link nor an
            // existing file, so proving the directory writable can never truncate anything. A
            // GUID's 122 random bits come from the system's generator without loading OpenSSL.
            var probe = Path.Combine(_directory, $".probe-{Guid.NewGuid():N}");
            File.OpenHandle(probe, FileMode.CreateNew, FileAccess.Write).Dispose();
            File.Delete(probe);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"lease directory {_directory} is not usable: {e.Message}";
        }
    }

    /// <summary>
    /// Holds an exclusive lock on this identity for the life of the process. Two candidates with one
    /// identity would both believe they hold the lease; on one host that mistake (two copies started
    /// with the default identity, the host name) is caught here instead.
    /// </summary>
    /// <returns><see langword="null"/> when this process now owns the identity, else one line naming the problem.</returns>
    public string? ClaimIdentity(string identity)
    {
        var path = Path.Combine(_directory, $".{_fileName}.identity-{IdentityHash(identity)}");
        try
        {
            _identityLock = OpenLocked(path);
            return null;
        }
        catch (IOException e) when (IsLockedByOther(e))
        {
            return $"another process on this host already runs as identity \"{identity}\" for this lease; give each copy its own --identity";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"lease directory {_directory} is not usable: {e.Message}";
        }
    }

    public void Dispose() => _identityLock?.Dispose();

    public Task<LeaseSnapshot?> GetAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(Read());
    }

    public async Task<LeaseSnapshot> CreateAsync(LeaseRecord record, CancellationToken cancellationToken)
    {
        using var held = await LockAsync(cancellationToken);
        if (Read() is not null)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Conflict, $"{_fileName} already exists");
        }

        return Write(new LeaseSnapshot(record, "1", Guid.NewGuid().ToString()));
    }

    public async Task<LeaseSnapshot> UpdateAsync(LeaseSnapshot current, LeaseRecord record, CancellationToken cancellationToken)
    {
        using var held = await LockAsync(cancellationToken);
        var stored = Read() ?? throw new LeaseStoreException(LeaseStoreFailure.NotFound, $"{_fileName} does not exist");
        if (stored.Version != current.Version || stored.Uid != current.Uid)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Conflict, $"{_fileName} was modified (version {stored.Version}, expected {current.Version})");
        }

        var version = long.Parse(stored.Version, CultureInfo.InvariantCulture);
        if (version == long.MaxValue)
        {
            // Only a hand-made file gets here (a write a millisecond takes 292 million years). A
            // wrapped or negative version would make the file invalid for every candidate, and
            // restarting the count would reuse versions under this uid: refuse, and say how to go on.
            throw new LeaseStoreException(LeaseStoreFailure.Invalid, $"{_path} is at resourceVersion {version}, which cannot grow; delete the file to start the lease again under a new uid");
        }

        return Write(new LeaseSnapshot(record, (version + 1).ToString(CultureInfo.InvariantCulture), stored.Uid));
    }

    public async IAsyncEnumerable<LeaseSnapshot?> WatchAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var changed = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
        Exception? failure = null;
        using var watcher = new FileSystemWatcher(_directory)
        {
            NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size,
        };

        void OnEvent(object sender, FileSystemEventArgs e)
        {
            if (e.Name == _fileName || (e is RenamedEventArgs r && r.OldName == _fileName))
            {
                changed.Writer.TryWrite(true);
            }
        }

        watcher.Changed += OnEvent;
        watcher.Created += OnEvent;
        watcher.Deleted += OnEvent;
        watcher.Renamed += OnEvent;
        watcher.Error += (_, e) =>
        {
            failure = e.GetException();
            changed.Writer.TryWrite(true);
        };
        watcher.EnableRaisingEvents = true;

        var last = Read();
        yield return last;

        // One wait for a change notice lives until a notice comes, across any number of idle
        // re-reads: a fresh wait each second would leave one waiter and one token registration
        // behind per second, freed only by the next change.
        Task<bool>? changeNotice = null;
        while (true)
        {
            changeNotice ??= WaitForChangeNoticeAsync(changed.Reader, cancellationToken);
            using (var pollCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                var woke = await Task.WhenAny(changeNotice, Task.Delay(PollInterval, _time, pollCts.Token));
                await pollCts.CancelAsync();
                if (woke != changeNotice)
                {
                    Interlocked.Increment(ref _rereads);
                }
            }

            cancellationToken.ThrowIfCancellationRequested();
            if (changeNotice.IsCompleted)
            {
                changeNotice = null;
                changed.Reader.TryRead(out _);
            }

            if (failure is not null)
            {
                throw new LeaseStoreException(LeaseStoreFailure.Unavailable, $"watching {_directory} failed: {failure.Message}", failure);
            }

            var now = Read();
            if (now?.Version != last?.Version || now?.Uid != last?.Uid)
            {
                last = now;
                yield return now;
            }
        }
    }

    private async Task<bool> WaitForChangeNoticeAsync(ChannelReader<bool> notices, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _pendingChangeWaits);
        try
        {
            return await notices.WaitToReadAsync(cancellationToken);
        }
        finally
        {
            Interlocked.Decrement(ref _pendingChangeWaits);
        }
    }

    /// <summary>
    /// 16 hex digits naming <paramref name="identity"/>'s lock file: 64-bit FNV-1a of its UTF-8
    /// bytes. Not a cryptographic hash on purpose: on Linux those load OpenSSL (about 3.6 MiB of
    /// resident memory) into a daemon that may never use TLS; identities are the operator's own,
    /// not an attacker's, and a collision only refuses a start.
    /// </summary>
    internal static string IdentityHash(string identity)
    {
        var hash = 14695981039346656037UL;
        foreach (var b in System.Text.Encoding.UTF8.GetBytes(identity))
        {
            hash = (hash ^ b) * 1099511628211UL;
        }

        return hash.ToString("x16", CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Reads the lease file: at most <see cref="MaxRecordBytes"/>, never through a symbolic link.
    /// What is wrong with a bad file is said without its content, which anyone who can write the
    /// directory chooses.
    /// </summary>
    private LeaseSnapshot? Read()
    {
        byte[] bytes;
        int length;
        try
        {
            using var file = OpenFile(_path, write: false);
            var size = file.Length;
            if (size > MaxRecordBytes)
            {
                throw Invalid($"{size} bytes, more than the {MaxRecordBytes} a lease record may have");
            }

            bytes = new byte[size + 1];
            length = file.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false);
            if (length > size)
            {
                // Candidates replace the file by rename; only a writer in place makes it grow.
                throw Invalid("it grew while being read (something writes it in place)");
            }
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (IOException e) when (UnixFiles.IsSymbolicLink(e))
        {
            throw Invalid("it is a symbolic link, which is never followed");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Failure(e, "read");
        }

        FileLeaseDocument? document;
        try
        {
            document = JsonSerializer.Deserialize(bytes.AsSpan(0, length), FileLeaseJsonContext.Default.FileLeaseDocument);
        }
        catch (JsonException e)
        {
            // JsonException's message can quote the file (a property path), so only the position is given.
            throw Invalid($"not JSON of the lease file's shape (line {e.LineNumber}, byte {e.BytePositionInLine})", e);
        }

        if (document?.Spec is not { } spec || string.IsNullOrEmpty(document.Uid) || document.ResourceVersion < 1)
        {
            throw Invalid("uid, resourceVersion or spec missing");
        }

        if (document.Uid.Length > MaxUidLength || !document.Uid.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
        {
            throw Invalid($"the uid must be at most {MaxUidLength} letters, digits, '-', '_' or '.'");
        }

        var record = new LeaseRecord(spec.HolderIdentity ?? "", spec.LeaseDurationSeconds ?? 0, spec.AcquireTime, spec.RenewTime, spec.LeaseTransitions ?? 0);
        return new LeaseSnapshot(record, document.ResourceVersion.ToString(CultureInfo.InvariantCulture), document.Uid);
    }

    private LeaseSnapshot Write(LeaseSnapshot lease)
    {
        var r = lease.Record;
        var document = new FileLeaseDocument(
            lease.Uid,
            long.Parse(lease.Version, CultureInfo.InvariantCulture),
            new FileLeaseSpec(r.HolderIdentity, r.LeaseDurationSeconds, r.AcquireTime, r.RenewTime, r.LeaseTransitions));
        var temporary = Path.Combine(_directory, $".{_fileName}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
            {
                JsonSerializer.Serialize(stream, document, FileLeaseJsonContext.Default.FileLeaseDocument);
            }

            File.Move(temporary, _path, overwrite: true);
            return lease;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temporary);
            throw Failure(e, "write");
        }
    }

    private LeaseStoreException Invalid(string why, Exception? inner = null) =>
        new(LeaseStoreFailure.Invalid, $"{_path} is not a valid lease file: {why}", inner);

    /// <summary>Opens (creating when <paramref name="write"/>) a file in the lease directory, never through a link.</summary>
    private static FileStream OpenFile(string path, bool write) =>
        UnixFiles.Supported
            ? UnixFiles.Open(path, write, create: write)
            : new FileStream(path, write ? FileMode.OpenOrCreate : FileMode.Open, write ? FileAccess.ReadWrite : FileAccess.Read, FileShare.ReadWrite);

    /// <summary>Opens and exclusively locks (<c>flock</c>) a file in the lease directory without waiting.</summary>
    private static FileStream OpenLocked(string path)
    {
        if (!UnixFiles.Supported)
        {
            // FileShare.None is an exclusive flock() on Unix.
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }

        var file = UnixFiles.Open(path, write: true, create: true);
        try
        {
            UnixFiles.LockExclusiveNow(file, path);
            return file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Takes the exclusive lock, waiting while another process holds it.</summary>
    private async Task<FileStream> LockAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                // The flock() is released when the stream closes (or the process dies, so a
                // crashed writer never leaves the lease locked).
                return OpenLocked(_lockPath);
            }
            catch (IOException e) when (IsLockedByOther(e))
            {
                await Task.Delay(LockRetry, _time, cancellationToken);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw Failure(e, "lock");
            }
        }
    }

    private static bool IsLockedByOther(IOException e) =>
        // On Unix .NET reports flock()'s EWOULDBLOCK as the raw errno (11 on Linux, 35 on macOS);
        // on Windows it is ERROR_SHARING_VIOLATION or ERROR_LOCK_VIOLATION.
        e.HResult is 11 or 35 || (e.HResult & 0xFFFF) is 32 or 33;

    private LeaseStoreException Failure(Exception e, string action) => new(
        e is UnauthorizedAccessException ? LeaseStoreFailure.Forbidden : LeaseStoreFailure.Unavailable,
        $"could not {action} {_path}: {e.Message}",
        e);

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
}
