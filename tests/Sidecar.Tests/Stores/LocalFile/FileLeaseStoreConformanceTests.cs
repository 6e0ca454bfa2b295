using LeaderSidecar.Election;
using LeaderSidecar.Stores.LocalFile;

namespace LeaderSidecar.Tests.Stores.LocalFile;

/// <summary>The store contract for the local file backend, on the real file system.</summary>
public sealed class FileLeaseStoreConformanceTests : LeaseStoreConformanceTests
{
    private readonly TempDirectory _dir = new();
    private readonly List<IDisposable> _held = [];

    public override async Task DisposeAsync()
    {
        foreach (var held in _held)
        {
            held.Dispose();
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

    private ILeaseStore Connect(string directory)
    {
        var store = new FileLeaseStore(directory, "default", "app", TimeProvider.System);
        _held.Add(store);
        Assert.Null(store.CheckUsable());
        return store;
    }
}
