using System.Net;
using LeaderSidecar.Election;
using LeaderSidecar.Surfaces.Metrics;

namespace LeaderSidecar.AppHealth;

/// <summary>
/// Asks the app's own health endpoint every interval and feeds the answer into the
/// <see cref="CampaignGate"/>: the gate opens at the first passing check and closes after
/// <see cref="AppHealthOptions.Threshold"/> failures in a row. What an unfit replica does about
/// it — wait, stand aside, or lead anyway when nobody fit does — is the election core's rule.
/// </summary>
/// <remarks>
/// A check passes on an HTTP status from 200 to 399 within the timeout, as a kubelet
/// <c>httpGet</c> probe does; redirects are not followed and the body is not read. The gate starts
/// closed, and the first check runs before the election starts, so a replica whose app is not up
/// yet lets a healthy one lead first. The check never touches readiness or liveness: those
/// describe the sidecar, not the app.
/// </remarks>
internal sealed partial class AppHealthCheck(
    AppHealthOptions options,
    CampaignGate gate,
    SidecarMetrics metrics,
    TimeProvider time,
    ILogger<AppHealthCheck> logger) : IHostedService, IDisposable
{
    private readonly HttpClient _http = new(new SocketsHttpHandler
    {
        // Loopback only, never through a proxy from the environment.
        UseProxy = false,
        AllowAutoRedirect = false,
        ConnectTimeout = options.Timeout,
        MaxResponseHeadersLength = 16,
        MaxConnectionsPerServer = 1,
    })
    {
        Timeout = System.Threading.Timeout.InfiniteTimeSpan,
    };

    private readonly CancellationTokenSource _stop = new();
    private Task _loop = Task.CompletedTask;
    private int _failures;
    private bool? _healthy;

    /// <summary>The first check, before the election starts; then one every interval.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await CheckAsync(cancellationToken);
        _loop = Task.Run(() => LoopAsync(_stop.Token), CancellationToken.None);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stop.CancelAsync();
        await _loop.WaitAsync(cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
    }

    public void Dispose()
    {
        _stop.Dispose();
        _http.Dispose();
    }

    private async Task LoopAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(options.Interval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                await CheckAsync(ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private async Task CheckAsync(CancellationToken ct)
    {
        var failure = await ProbeAsync(ct);
        if (failure is null)
        {
            _failures = 0;
            if (_healthy != true)
            {
                _healthy = true;
                LogHealthy(logger, options.Url.ToString());
                gate.Open();
            }
        }
        else
        {
            _failures = Math.Min(_failures + 1, options.Threshold);
            LogCheckFailed(logger, failure, _failures, options.Threshold);
            // Not checked yet counts as unfit from the start; a healthy app becomes unfit only after
            // the threshold, so one slow answer does not hand leadership over.
            var reason = $"app health check failed {_failures} time(s) in a row: {failure}";
            if (_healthy is null || (_healthy == true && _failures >= options.Threshold))
            {
                _healthy = false;
                LogUnhealthy(logger, reason);
            }

            if (_healthy == false)
            {
                // Closed already: this only keeps the reason the elector logs up to date.
                gate.Close(reason);
            }
        }

        metrics.AppHealthy(_healthy == true);
    }

    /// <summary>Null when the check passes, else why not (one short line).</summary>
    private async Task<string?> ProbeAsync(CancellationToken ct)
    {
        using var timeout = new CancellationTokenSource(options.Timeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, timeout.Token);
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, options.Url);
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, linked.Token);
            var code = (int)response.StatusCode;
            return code is >= 200 and < 400 ? null : $"HTTP {code}";
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !ct.IsCancellationRequested)
        {
            return $"no answer within {options.Timeout.TotalMilliseconds:0} ms";
        }
        catch (HttpRequestException e)
        {
            return e.HttpRequestError switch
            {
                HttpRequestError.ConnectionError => "connection refused or failed",
                HttpRequestError.InvalidResponse or HttpRequestError.ResponseEnded => "not a valid HTTP answer",
                HttpRequestError.ConfigurationLimitExceeded => "answer headers too large",
                _ => e.HttpRequestError.ToString(),
            };
        }
        catch (IOException e)
        {
            return e.Message;
        }
    }

    [LoggerMessage(EventId = 1300, EventName = "AppHealthy", Level = LogLevel.Information,
        Message = "App health check {Url} passes: fit to lead")]
    private static partial void LogHealthy(ILogger logger, string url);

    [LoggerMessage(EventId = 1301, EventName = "AppUnhealthy", Level = LogLevel.Warning,
        Message = "Not fit to lead: {Reason}")]
    private static partial void LogUnhealthy(ILogger logger, string reason);

    [LoggerMessage(EventId = 1302, EventName = "AppHealthCheckFailed", Level = LogLevel.Debug,
        Message = "App health check failed ({Failure}); {Failures} of {Threshold} in a row")]
    private static partial void LogCheckFailed(ILogger logger, string failure, int failures, int threshold);
}
