using LeaderSidecar.Election;

namespace LeaderSidecar.Tests.Stores;

/// <summary>
/// The part of the <see cref="ILeaseStore"/> contract that only a store behind a server can meet:
/// credentials the server rejects (<see cref="LeaseStoreFailure.Unauthorized"/>), and a server that
/// stops answering, which the store must end within its own request timeout
/// (<see cref="LeaseStoreFailure.Timeout"/>).
/// </summary>
/// <remarks>
/// A store on the local file system derives from <see cref="LeaseStoreConformanceTests"/> instead:
/// it presents no credentials, so nothing can reject them, and it has no request timeout of its
/// own (a write waiting for another process's lock waits until the caller cancels, which the base
/// class tests), so it never reports either reason.
/// </remarks>
public abstract class RemoteLeaseStoreConformanceTests : LeaseStoreConformanceTests
{
    /// <summary>A client whose credentials the server rejects (a wrong password, an unknown token).</summary>
    protected abstract Task<ILeaseStore> ConnectWithRejectedCredentialsAsync();

    /// <summary>
    /// A client with <paramref name="requestTimeout"/> as its request timeout, of a server that
    /// accepts connections but stopped answering (frozen, or its answers lost on the way).
    /// </summary>
    protected abstract Task<ILeaseStore> ConnectToStalledServerAsync(TimeSpan requestTimeout);

    [Fact]
    public async Task Rejected_credentials_are_unauthorized_for_reads_writes_and_the_watch()
    {
        var store = await ConnectWithRejectedCredentialsAsync();

        var read = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(Ct));
        var write = await Assert.ThrowsAsync<LeaseStoreException>(() => store.CreateAsync(Record("a"), Ct));
        var watch = await Assert.ThrowsAsync<LeaseStoreException>(() => FirstWatchItemAsync(store));

        Assert.Equal(LeaseStoreFailure.Unauthorized, read.Reason);
        Assert.Equal(LeaseStoreFailure.Unauthorized, write.Reason);
        Assert.Equal(LeaseStoreFailure.Unauthorized, watch.Reason);
    }

    [Fact]
    public async Task A_watch_on_a_server_that_stopped_answering_fails_as_a_timeout_within_the_request_timeout()
    {
        // The caller passes no deadline of its own (only the test's): the store's request timeout
        // alone must end the wait for the watch's first state.
        var store = await ConnectToStalledServerAsync(TimeSpan.FromMilliseconds(500));

        var failure = await Assert.ThrowsAsync<LeaseStoreException>(() => FirstWatchItemAsync(store));

        Assert.Equal(LeaseStoreFailure.Timeout, failure.Reason);
    }

    private async Task<LeaseSnapshot?> FirstWatchItemAsync(ILeaseStore store)
    {
        await using var watch = store.WatchAsync(Ct).GetAsyncEnumerator(Ct);
        return await NextAsync(watch);
    }
}
