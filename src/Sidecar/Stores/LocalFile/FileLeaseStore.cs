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
/// <c>flock</c> (not NFS).
/// </remarks>
internal sealed class FileLeaseStore : ILeaseStore, IDisposable
{
    private static readonly TimeSpan LockRetry = TimeSpan.FromMilliseconds(2);
    private static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(1);

    private readonly string _directory;
    private readonly string _fileName;
    private readonly string _path;
    private readonly string _lockPath;
    private readonly TimeProvider _time;
    private FileStream? _identityLock;

    public FileLeaseStore(string directory, string @namespace, string name, TimeProvider time)
    {
        _directory = Path.GetFullPath(directory);
        // '_' can appear in neither a namespace nor a lease name, so the file name is unambiguous.
        _fileName = $"{@namespace}_{name}.json";
        _path = Path.Combine(_directory, _fileName);
        _lockPath = _path + ".lock";
        _time = time;
    }

    public string Description => $"file lease {_path}";

    /// <summary>
    /// Creates the directory (owner-only) if needed and proves it is writable, so a bad
    /// <c>--lease-dir</c> is a start-up error rather than an endless retry.
    /// </summary>
    /// <returns><see langword="null"/> when usable, else one line naming the problem.</returns>
    public string? CheckUsable()
    {
        try
        {
            if (OperatingSystem.IsWindows())
            {
                Directory.CreateDirectory(_directory);
            }
            else
            {
                Directory.CreateDirectory(_directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }
            using (new FileStream(_lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite))
            {
            }

            var probe = Path.Combine(_directory, $".probe-{Environment.ProcessId}");
            File.WriteAllBytes(probe, []);
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
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(identity)))[..16];
        var path = Path.Combine(_directory, $".{_fileName}.identity-{hash}");
        try
        {
            _identityLock = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
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

        var next = long.Parse(stored.Version, CultureInfo.InvariantCulture) + 1;
        return Write(new LeaseSnapshot(record, next.ToString(CultureInfo.InvariantCulture), stored.Uid));
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
        while (true)
        {
            using (var pollCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                await Task.WhenAny(changed.Reader.WaitToReadAsync(cancellationToken).AsTask(), Task.Delay(PollInterval, _time, pollCts.Token));
                await pollCts.CancelAsync();
            }

            cancellationToken.ThrowIfCancellationRequested();
            changed.Reader.TryRead(out _);
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

    private LeaseSnapshot? Read()
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(_path);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Failure(e, "read");
        }

        FileLeaseDocument? document;
        try
        {
            document = JsonSerializer.Deserialize(bytes, FileLeaseJsonContext.Default.FileLeaseDocument);
        }
        catch (JsonException e)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Invalid, $"{_path} is not a valid lease file: {e.Message}", e);
        }

        if (document?.Spec is not { } spec || string.IsNullOrEmpty(document.Uid) || document.ResourceVersion < 1)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Invalid, $"{_path} is not a valid lease file: uid, resourceVersion or spec missing");
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

    /// <summary>Takes the exclusive lock, waiting while another process holds it.</summary>
    private async Task<FileStream> LockAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                // FileShare.None is an exclusive flock() on Unix, released when the stream closes
                // (or the process dies, so a crashed writer never leaves the lease locked).
                return new FileStream(_lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
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
