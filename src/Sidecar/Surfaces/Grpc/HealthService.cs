using Grpc.Core;
using Grpc.Health.V1;
using LeaderSidecar.Election;
using LeaderSidecar.Surfaces.Health;
using RpcStatus = Grpc.Core.Status;
using ServingStatus = Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus;

namespace LeaderSidecar.Surfaces.Grpc;

/// <summary>
/// The standard <c>grpc.health.v1.Health</c> service, so Kubernetes gRPC probes and
/// <c>grpc_health_probe</c> work. <c>""</c> is liveness (as <c>/healthz</c>),
/// <c>leadership.v1.Leadership</c> readiness (as <c>/readyz</c>).
/// </summary>
internal sealed class HealthService(Probes probes, LeadershipState state, Drain drain, TimeProvider time) : global::Grpc.Health.V1.Health.HealthBase
{
    public const string ReadinessService = "leadership.v1.Leadership";

    /// <summary>Liveness depends on time as well as on status changes; Watch re-checks this often.</summary>
    private static readonly TimeSpan RecheckInterval = TimeSpan.FromSeconds(1);

    public override Task<HealthCheckResponse> Check(HealthCheckRequest request, ServerCallContext context) =>
        Evaluate(request.Service) is { } status
            ? Task.FromResult(new HealthCheckResponse { Status = status })
            : throw new RpcException(new RpcStatus(StatusCode.NotFound, $"unknown service \"{request.Service}\""));

    public override async Task Watch(HealthCheckRequest request, IServerStreamWriter<HealthCheckResponse> responseStream, ServerCallContext context)
    {
        using var ends = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, drain.Closing);
        var token = ends.Token;
        ServingStatus? sent = null;
        try
        {
            while (true)
            {
                var revision = state.Current.Revision;
                var now = Evaluate(request.Service) ?? ServingStatus.ServiceUnknown;
                if (now != sent)
                {
                    await responseStream.WriteAsync(new HealthCheckResponse { Status = now }, token);
                    sent = now;
                }

                using var recheck = new CancellationTokenSource(RecheckInterval, time);
                using var wake = CancellationTokenSource.CreateLinkedTokenSource(recheck.Token, token);
                try
                {
                    await state.WaitForChangeAsync(revision, wake.Token);
                }
                catch (OperationCanceledException) when (!token.IsCancellationRequested)
                {
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
    }

    private ServingStatus? Evaluate(string service) => service switch
    {
        "" => probes.Liveness() is null ? ServingStatus.Serving : ServingStatus.NotServing,
        ReadinessService => probes.Readiness() is null ? ServingStatus.Serving : ServingStatus.NotServing,
        _ => null,
    };
}
