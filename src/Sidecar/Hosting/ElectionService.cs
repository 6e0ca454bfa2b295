using LeaderSidecar.Election;
using LeaderSidecar.Surfaces;

namespace LeaderSidecar.Hosting;

/// <summary>
/// Runs the elector for the lifetime of the host, from the moment the host has started. On shutdown it resigns in
/// <see cref="StoppingAsync"/>, which the host calls before it stops any service, so the surfaces
/// are still up to report the step-down while the lease is released.
/// </summary>
internal sealed partial class ElectionService(
    LeaderElector elector,
    Drain drain,
    IHostApplicationLifetime lifetime,
    ILogger<ElectionService> logger) : IHostedLifecycleService, IDisposable
{
    private readonly CancellationTokenSource _abandon = new();
    private Task _run = Task.CompletedTask;

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>
    /// Campaigning starts only once every surface is up (the ports are bound), so a replica that
    /// cannot serve its surfaces never takes the lease.
    /// </summary>
    public Task StartedAsync(CancellationToken cancellationToken)
    {
        _run = Task.Run(() => elector.RunAsync(_abandon.Token), CancellationToken.None);
        _ = _run.ContinueWith(
            t =>
            {
                // The loop never ends on its own; if it does, a bug ended it. Exit rather than linger
                // as a replica that silently stopped campaigning.
                var reason = t.Exception?.GetBaseException().Message ?? "the election loop ended";
                LogElectorFailed(logger, reason);
                Environment.ExitCode = 1;
                lifetime.StopApplication();
            },
            CancellationToken.None,
            TaskContinuationOptions.NotOnRanToCompletion,
            TaskScheduler.Default);
        return Task.CompletedTask;
    }

    /// <summary>
    /// The shutdown order: every surface stops saying "leader", the app may confirm it stopped
    /// (<see cref="Drain"/>), the lease is released, and only then do streams and long polls end.
    /// </summary>
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        drain.Begin();
        try
        {
            await elector.StopAsync(drain.WaitAsync, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            LogReleaseTimedOut(logger);
        }
        finally
        {
            drain.Close();
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _abandon.CancelAsync();
        await _run.WaitAsync(cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
    }

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose() => _abandon.Dispose();

    [LoggerMessage(EventId = 200, EventName = "ElectorFailed", Level = LogLevel.Critical,
        Message = "The election loop failed ({Reason}); exiting")]
    private static partial void LogElectorFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 201, EventName = "ReleaseTimedOut", Level = LogLevel.Warning,
        Message = "Shutdown timed out before the lease was released; followers take it when it expires")]
    private static partial void LogReleaseTimedOut(ILogger logger);
}
