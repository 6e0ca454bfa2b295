using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;
using Leadership.V1;
using LeaderSidecar.Configuration;

namespace LeaderSidecar.Cli;

/// <summary>
/// <c>leader-sidecar status</c> and <c>leader-sidecar resign [--hold-off D]</c>: a client of a
/// running sidecar's gRPC surface, so that <c>kubectl exec POD -c leader-sidecar --
/// /leader-sidecar resign</c> moves leadership without a shell in the image. It finds the sidecar
/// where the sidecar itself listens: <c>--address</c>, else <c>$LEADER_SIDECAR_GRPC_ADDRESS</c> (which
/// an exec into the sidecar's container inherits), else the default. Exit codes: 0 done, 1 the
/// sidecar could not be reached or refused, 2 bad input; always one line on stderr for an error.
/// </summary>
internal static class ControlCommand
{
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

    public static bool IsRequested(string[] args) => args is ["status" or "resign", ..];

    public static async Task<int> RunAsync(string[] args, Func<string, string?> environment)
    {
        if (args.Skip(1).Any(a => a is "--help" or "-h"))
        {
            Console.Out.Write(Help());
            return 0;
        }

        if (Parse(args, environment) is not { } request)
        {
            return 2;
        }

        using var channel = Channel(request.Address);
        var client = new global::Leadership.V1.Leadership.LeadershipClient(channel);
        var deadline = DateTime.UtcNow + request.Timeout;
        try
        {
            if (request.Verb == "status")
            {
                Console.Out.Write(Describe(await client.GetStatusAsync(new GetStatusRequest(), deadline: deadline)));
                return 0;
            }

            var headers = request.Token is { } token ? new Metadata { { "authorization", $"Bearer {token}" } } : null;
            var resign = new ResignRequest { HoldOff = Duration.FromTimeSpan(request.HoldOff) };
            var response = await client.ResignAsync(resign, headers, deadline);
            Console.Out.WriteLine(request.HoldOff > TimeSpan.Zero
                ? $"resigned; staying out of the election for {GoDuration.Format(request.HoldOff)}"
                : "resigned");
            Console.Out.Write(Describe(response.Status));
            return 0;
        }
        catch (RpcException e)
        {
            Console.Error.WriteLine($"leader-sidecar {request.Verb}: {Reason(e, request.Address)}");
            return 1;
        }
    }

    private sealed record Request(string Verb, ListenAddress Address, TimeSpan HoldOff, string? Token, TimeSpan Timeout);

    /// <summary>The request, or null after one line on stderr.</summary>
    private static Request? Parse(string[] args, Func<string, string?> environment)
    {
        var verb = args[0];
        var addressText = environment("LEADER_SIDECAR_GRPC_ADDRESS") is { Length: > 0 } fromEnvironment ? fromEnvironment : "127.0.0.1:4041";
        var addressOrigin = "$LEADER_SIDECAR_GRPC_ADDRESS";
        var tokenFile = environment("LEADER_SIDECAR_CONTROL_TOKEN_FILE") is { Length: > 0 } file ? file : null;
        var holdOff = TimeSpan.Zero;
        var timeout = DefaultTimeout;
        for (var i = 1; i < args.Length; i++)
        {
            var arg = args[i];
            var equals = arg.IndexOf('=', StringComparison.Ordinal);
            var name = equals < 0 ? arg : arg[..equals];
            if (name is not ("--address" or "--control-token-file" or "--timeout") && !(name == "--hold-off" && verb == "resign"))
            {
                return Fail(verb, $"unknown argument \"{arg}\" (see {verb} --help)");
            }

            string value;
            if (equals >= 0)
            {
                value = arg[(equals + 1)..];
            }
            else if (i + 1 < args.Length)
            {
                value = args[++i];
            }
            else
            {
                return Fail(verb, $"{name} needs a value");
            }

            switch (name)
            {
                case "--address":
                    addressText = value;
                    addressOrigin = "--address";
                    break;
                case "--control-token-file":
                    tokenFile = value;
                    break;
                case "--hold-off" or "--timeout":
                    if (!GoDuration.TryParse(value, out var duration, out var error))
                    {
                        return Fail(verb, $"{error} ({name})");
                    }

                    if (duration <= TimeSpan.Zero && name == "--timeout")
                    {
                        return Fail(verb, $"--timeout must be positive ({GoDuration.Format(duration)})");
                    }

                    if (name == "--hold-off" && (duration < TimeSpan.Zero || duration > TimeSpan.FromHours(1)))
                    {
                        return Fail(verb, $"--hold-off must be between 0s and 1h ({GoDuration.Format(duration)})");
                    }

                    (holdOff, timeout) = name == "--hold-off" ? (duration, timeout) : (holdOff, duration);
                    break;
            }
        }

        if (!ListenAddress.TryParse(addressText, allowUnixSocket: true, out var address, out var addressError))
        {
            return Fail(verb, $"{addressError} ({addressOrigin})");
        }

        string? token = null;
        if (verb == "resign" && tokenFile is not null && !address!.IsUnixSocket)
        {
            token = ControlToken.ReadText(tokenFile, out var tokenError);
            if (token is null)
            {
                return Fail(verb, tokenError);
            }
        }

        return new Request(verb, address!, holdOff, token, timeout);
    }

    private static Request? Fail(string verb, string message)
    {
        Console.Error.WriteLine($"leader-sidecar {verb}: {message}");
        return null;
    }

    private static GrpcChannel Channel(ListenAddress address)
    {
        var handler = new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(5) };
        if (address.UnixSocketPath is { } path)
        {
            handler.ConnectCallback = async (_, cancellationToken) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            };
            return GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = handler });
        }

        return GrpcChannel.ForAddress($"http://{address}", new GrpcChannelOptions { HttpHandler = handler });
    }

    private static string Reason(RpcException e, ListenAddress address) => e.StatusCode switch
    {
        StatusCode.Unavailable => $"no sidecar answers at {address} ({e.Status.Detail})",
        StatusCode.DeadlineExceeded => $"the sidecar at {address} did not answer in time",
        StatusCode.PermissionDenied => $"refused: {e.Status.Detail}",
        _ => $"{e.StatusCode}: {e.Status.Detail}",
    };

    /// <summary>The status as "key: value" lines, for people and for grep.</summary>
    internal static string Describe(Leadership.V1.Status status)
    {
        var text = new StringBuilder();
        void Line(string key, string value) => text.Append(key).Append(": ").Append(value).Append('\n');
        Line("role", status.Role switch { Role.Leader => "leader", Role.Follower => "follower", _ => "unknown" });
        Line("identity", status.Identity);
        Line("holder", status.Holder.Length > 0 ? status.Holder : "(none)");
        Line("term", status.HasTerm ? status.Term.ToString(CultureInfo.InvariantCulture) : "(unknown)");
        Line("lease", status.LeaseNamespace.Length > 0 ? $"{status.LeaseNamespace}/{status.LeaseName}" : status.LeaseName);
        if (status.LeaseUid.Length > 0)
        {
            Line("lease uid", status.LeaseUid);
        }

        if (status.ValidUntil is { } validUntil)
        {
            Line("valid until", validUntil.ToDateTimeOffset().ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture));
        }

        if (status.ObservedAge is { } age)
        {
            Line("observed", $"{GoDuration.Format(age.ToTimeSpan())} ago");
        }

        if (status.Draining)
        {
            Line("draining", "true");
        }

        return text.ToString();
    }

    private static string Help() => """
        Usage: leader-sidecar status [--address A] [--timeout D]
               leader-sidecar resign [--hold-off D] [--address A] [--control-token-file PATH] [--timeout D]

        Talk to the sidecar running in this container (or at --address): show its status, or make it
        give up leadership now and stay out of the election for --hold-off (default 0s, at most 1h).

          --address A              the sidecar's gRPC address, HOST:PORT or unix:PATH
                                   (default $LEADER_SIDECAR_GRPC_ADDRESS, else 127.0.0.1:4041)
          --control-token-file F   over TCP, the token the sidecar's --control-token-file holds
                                   (default $LEADER_SIDECAR_CONTROL_TOKEN_FILE); not needed over a unix socket
          --timeout D              give up after D (default 30s)

        Exit codes: 0 done, 1 the sidecar could not be reached or refused, 2 bad input.

        """;
}
