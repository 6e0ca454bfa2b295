using LeaderSidecar.Election;

namespace LeaderSidecar.Stores;

/// <summary>
/// Bounds one store request by the store's own request timeout, on top of the caller's token:
/// a store's internal steps (a re-list, a member failover) must not outlive it.
/// </summary>
internal static class RequestTimeout
{
    /// <summary>Runs <paramref name="request"/> within <paramref name="timeout"/>; running out of it is a <see cref="LeaseStoreFailure.Timeout"/>.</summary>
    public static async Task<T> WithinAsync<T>(string what, TimeSpan timeout, TimeProvider time, Func<CancellationToken, Task<T>> request, CancellationToken cancellationToken)
    {
        using var timer = new CancellationTokenSource(timeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timer.Token);
        try
        {
            return await request(linked.Token);
        }
        catch (OperationCanceledException e) when (timer.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Timeout, $"{what} did not complete within the request timeout ({timeout.TotalSeconds:0.###} s)", e);
        }
    }
}
