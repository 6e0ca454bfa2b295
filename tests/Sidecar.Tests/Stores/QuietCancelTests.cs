using System.Net.Sockets;
using LeaderSidecar.Stores;

namespace LeaderSidecar.Tests.Stores;

/// <summary>
/// A client library's cancellation callback that throws must not escape: the PostgreSQL and MySQL
/// stores cancel on the thread pool, where an escaping exception ends the process (the MySQL safety
/// run lost a daemon to "Transport endpoint is not connected" after its server was killed).
/// </summary>
public sealed class QuietCancelTests
{
    [Fact]
    public void A_cancellation_callback_that_throws_stays_inside_the_cancel()
    {
        using var source = new CancellationTokenSource();
        var later = false;
        source.Token.Register(() => throw new SocketException((int)SocketError.NotConnected));
        source.Token.Register(() => later = true);

        QuietCancel.Cancel(source);

        Assert.True(source.IsCancellationRequested);
        Assert.True(later);
    }

    [Fact]
    public void Cancelling_a_disposed_source_is_quiet()
    {
        var source = new CancellationTokenSource();
        source.Dispose();

        QuietCancel.Cancel(source);
    }

    [Fact]
    public async Task A_forwarded_cancellation_reaches_the_request_on_the_thread_pool_and_a_throwing_callback_is_contained()
    {
        using var caller = new CancellationTokenSource();
        using var request = new CancellationTokenSource();
        var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        request.Token.Register(() =>
        {
            reached.SetResult();
            throw new SocketException((int)SocketError.NotConnected);
        });
        using var forward = QuietCancel.Forward(request, caller.Token);

        await caller.CancelAsync();

        await reached.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(request.IsCancellationRequested);
    }
}
