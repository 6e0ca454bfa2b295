using System.Diagnostics;
using LeaderSidecar.Election;
using LeaderSidecar.Stores.LocalFile;

namespace LeaderSidecar.Tests.Stores.LocalFile;

/// <summary>The store contract for the local file backend, on the real file system.</summary>
/// <remarks>
/// Not a <see cref="RemoteLeaseStoreConformanceTests"/>: the file backend has no credentials to
/// reject (unauthorized) and no request timeout of its own (timeout), as that class explains.
/// </remarks>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class FileLeaseStoreConformanceTests : LeaseStoreConformanceTests
{
    private readonly TempDirectory _dir = new();
    private readonly List<IDisposable> _held = [];
    private bool _immutable;

    public override async Task DisposeAsync()
    {
        foreach (var held in _held)
        {
            held.Dispose();
        }

        if (_immutable)
        {
            await ChattrAsync("-i", _dir.Path);
        }
        else
        {
            File.SetUnixFileMode(_dir.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        _dir.Dispose();
        await base.DisposeAsync();
    }

    protected override Task<ILeaseStore> ConnectAsync() => Task.FromResult(Connect(_dir.Path));

    protected override Task DeleteLeaseAsync()
    {
        File.Delete(_dir.File("default_app.json"));
        return Task.CompletedTask;
    }

    // A local watch has no connection to lose: nothing to drop, and the test then checks that the
    // stream itself arrives at the newest state.
    protected override Task DropWatchesAsync() => Task.CompletedTask;

    protected override Task<ILeaseStore> ConnectHangingAsync()
    {
        // Another process holds the write lock and never lets go.
        var store = Connect(_dir.Path);
        _held.Add(new FileStream(_dir.File("default_app.json.lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
        return Task.FromResult(store);
    }

    protected override Task<ILeaseStore> ConnectUnreachableAsync()
    {
        // The directory went away underneath (an unmounted volume): something else is in its place.
        var gone = Path.Combine(_dir.Path, "volume");
        var store = Connect(gone);
        Directory.Delete(gone, recursive: true);
        File.WriteAllText(gone, "not a directory");
        return Task.FromResult(store);
    }

    protected override async Task<ILeaseStore> ConnectToInvalidLeaseAsync()
    {
        var store = Connect(_dir.Path);
        await File.WriteAllTextAsync(_dir.File("default_app.json"), "this is not a lease record");
        return store;
    }

    // A lease directory this process may read but not write (another user's, or mounted read-only
    // for it). Root passes every permission check, so for root the directory is made immutable
    // instead (chattr +i), which binds root too.
    protected override async Task<ILeaseStore> ConnectWithoutPermissionAsync()
    {
        var store = Connect(_dir.Path);
        if (Environment.IsPrivilegedProcess)
        {
            await ChattrAsync("+i", _dir.Path);
            _immutable = true;
        }
        else
        {
            File.SetUnixFileMode(_dir.Path, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        }

        return store;
    }

    private static async Task ChattrAsync(string change, string path)
    {
        using var chattr = Process.Start(new ProcessStartInfo("chattr", [change, path]) { RedirectStandardError = true })!;
        var error = await chattr.StandardError.ReadToEndAsync();
        await chattr.WaitForExitAsync();
        Assert.True(chattr.ExitCode == 0, $"chattr {change} {path} failed (the file system must support the immutable attribute): {error}");
    }

    private ILeaseStore Connect(string directory)
    {
        var store = new FileLeaseStore(directory, "default", "app", TimeProvider.System);
        _held.Add(store);
        Assert.Null(store.CheckUsable());
        return store;
    }
}
