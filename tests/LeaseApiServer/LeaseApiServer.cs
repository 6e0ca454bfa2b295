using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using LeaderSidecar.Testing.LeaseApi.Auth;
using LeaderSidecar.Testing.LeaseApi.Faults;
using LeaderSidecar.Testing.LeaseApi.Http;
using LeaderSidecar.Testing.LeaseApi.Metrics;
using LeaderSidecar.Testing.LeaseApi.Slices;
using LeaderSidecar.Testing.LeaseApi.Storage;
using LeaderSidecar.Testing.LeaseApi.Tls;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace LeaderSidecar.Testing.LeaseApi;

/// <summary>
/// An in-process imitation of kube-apiserver serving <c>coordination.k8s.io/v1</c> Leases on
/// 127.0.0.1 (ephemeral port), for tests. It answers like the real server — status codes, Status bodies,
/// watch events, resourceVersion semantics, RBAC by resourceNames — and lets a test reach behind the API:
/// edit data (<see cref="Store"/>), manage tokens (<see cref="Tokens"/>), inject faults
/// (<see cref="Faults"/>), count requests (<see cref="Requests"/>), drop or expire watches and restart.
/// </summary>
public sealed class LeaseApiServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConnectionTracker _connections;
    private readonly TestCertificates? _certificates;
    private readonly CancellationTokenSource _stopping;
    private readonly ITimer _bookmarks;

    private LeaseApiServer(
        WebApplication app,
        ConnectionTracker connections,
        TestCertificates? certificates,
        CancellationTokenSource stopping,
        LeaseStore store,
        EndpointSliceStore endpointSlices,
        TokenRegistry tokens,
        FaultInjector faults,
        RequestCounters requests,
        TimeSpan bookmarkInterval)
    {
        _app = app;
        _connections = connections;
        _certificates = certificates;
        _stopping = stopping;
        Store = store;
        EndpointSlices = endpointSlices;
        Tokens = tokens;
        Faults = faults;
        Requests = requests;
        _bookmarks = TimeProvider.System.CreateTimer(_ => SendBookmarks(), null, bookmarkInterval, bookmarkInterval);
    }

    /// <summary>Where the server listens, e.g. <c>http://127.0.0.1:41234/</c>.</summary>
    public Uri BaseAddress { get; private set; } = null!;

    /// <summary>The Leases, for reading and writing behind the API's back.</summary>
    public LeaseStore Store { get; }

    /// <summary>The EndpointSlices (<c>discovery.k8s.io/v1</c>), for creating, reading and editing behind the API's back.</summary>
    public EndpointSliceStore EndpointSlices { get; }

    /// <summary>core/v1 Events created through <c>POST /api/v1/namespaces/NS/events</c>.</summary>
    public EventLog Events { get; private init; } = new();

    /// <summary>Bearer tokens and what each may do.</summary>
    public TokenRegistry Tokens { get; }

    public FaultInjector Faults { get; }

    /// <summary>Requests received, by verb and token.</summary>
    public RequestCounters Requests { get; }

    /// <summary>The CA that signed the server certificate, in PEM (null without TLS); what a client puts in
    /// its <c>ca.crt</c> or kubeconfig <c>certificate-authority-data</c>.</summary>
    public string? CaCertificatePem => _certificates?.Authority.ExportCertificatePem();

    /// <summary>Open watch streams.</summary>
    public int OpenWatches => Store.OpenWatchCount;

    /// <summary>Open client connections.</summary>
    public int OpenConnections => _connections.OpenConnections;

    public static async Task<LeaseApiServer> StartAsync(LeaseApiServerOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new LeaseApiServerOptions();
        var time = options.TimeProvider;
        var store = new LeaseStore(time, options.InitialResourceVersion, options.HistoryLimit);
        var endpointSlices = new EndpointSliceStore(store.NextRevision, time);
        var tokens = new TokenRegistry(options.RequireAuthentication);
        var faults = new FaultInjector();
        var requests = new RequestCounters();
        var connections = new ConnectionTracker(faults);
        var stopping = new CancellationTokenSource();
        var certificates = options.UseTls ? TestCertificates.Create(time) : null;

        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(IPAddress.Loopback, 0, listen =>
            {
                listen.Protocols = certificates is null ? HttpProtocols.Http1 : HttpProtocols.Http1AndHttp2;
                listen.Use(connections.Track);
                if (certificates is not null)
                {
                    listen.UseHttps(certificates.Server);
                }
            });
        });
        var app = builder.Build();
        var watches = new WatchEndpoint(store, faults, options.DefaultWatchTimeout, stopping.Token);
        var handler = new LeaseApiHandler(store, tokens, faults, requests, watches, time);
        var slices = new EndpointSliceHandler(endpointSlices, tokens, faults);
        var events = new EventLog();
        var eventsEndpoint = new EventsEndpoint(tokens, events, store, time);
        app.Run(context => EndpointSliceHandler.Serves(context.Request) ? slices.HandleAsync(context)
            : EventsEndpoint.Namespace(context.Request) is { } eventsNamespace ? eventsEndpoint.ServeAsync(context, eventsNamespace)
            : handler.HandleAsync(context));

        var server = new LeaseApiServer(app, connections, certificates, stopping, store, endpointSlices, tokens, faults, requests, options.BookmarkInterval) { Events = events };
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }

        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        server.BaseAddress = new Uri(address.EndsWith('/') ? address : address + "/");
        return server;
    }

    /// <summary>
    /// An HttpClient for this server: it trusts the generated CA (and nothing else) and, given a token, sends
    /// it as <c>Authorization: Bearer</c>.
    /// </summary>
    public HttpClient CreateClient(string? token = null)
    {
        var handler = new SocketsHttpHandler();
        if (_certificates is { } certificates)
        {
            handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                certificate is X509Certificate2 presented && certificates.Trusts(presented);
        }

        var client = new HttpClient(handler) { BaseAddress = BaseAddress };
        if (token is not null)
        {
            client.DefaultRequestHeaders.Authorization = new("Bearer", token);
        }

        return client;
    }

    /// <summary>Whether a certificate chains to this server's CA (for clients with their own handler).</summary>
    public bool IsTrusted(X509Certificate2 certificate) => _certificates?.Trusts(certificate) ?? false;

    /// <summary>Writes a kubeconfig that points at this server with a token (and the CA, with TLS).</summary>
    public void WriteKubeconfig(string path, string token, string namespaceName = "default")
    {
        var authority = CaCertificatePem is { } pem
            ? $"    certificate-authority-data: {Convert.ToBase64String(Encoding.ASCII.GetBytes(pem))}\n"
            : "";
        File.WriteAllText(path, $"""
            apiVersion: v1
            kind: Config
            clusters:
            - name: lease-api-test
              cluster:
                server: {BaseAddress.ToString().TrimEnd('/')}

            """ + authority + $"""
            contexts:
            - name: lease-api-test
              context:
                cluster: lease-api-test
                user: lease-api-test
                namespace: {namespaceName}
            current-context: lease-api-test
            users:
            - name: lease-api-test
              user:
                token: {token}

            """);
    }

    /// <summary>Sends a BOOKMARK now on every watch that allowed bookmarks (besides the periodic ones).</summary>
    public void SendBookmarks() => Store.Broadcast(new WatchSignal.Bookmark());

    /// <summary>Ends every open watch: cleanly (end of the chunked body) or, with
    /// <paramref name="abortConnections"/>, by resetting the connection.</summary>
    public void DropWatches(bool abortConnections = false) =>
        Store.Broadcast(new WatchSignal.Drop(Expire: false, Abort: abortConnections));

    /// <summary>Compacts the history and ends every open watch with an ERROR 410 Expired event, so clients
    /// must list (or watch without a resourceVersion) again.</summary>
    public void ExpireWatches()
    {
        Store.CompactHistory();
        Store.Broadcast(new WatchSignal.Drop(Expire: true, Abort: false));
    }

    /// <summary>
    /// Imitates an API server restart: every connection is cut (in-flight, hung and idle keep-alive ones and
    /// all watches) and the watch history is lost, so resuming from an older resourceVersion gets 410. The
    /// Leases survive, as they would in etcd, unless <paramref name="wipeData"/>.
    /// </summary>
    public void Restart(bool wipeData = false)
    {
        if (wipeData)
        {
            Store.Wipe();
        }
        else
        {
            Store.CompactHistory();
        }

        Store.Broadcast(new WatchSignal.Drop(Expire: false, Abort: true));
        _connections.AbortAll();
    }

    public async ValueTask DisposeAsync()
    {
        await _bookmarks.DisposeAsync();
        Faults.Clear();
        await _stopping.CancelAsync();
        using (var grace = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
        {
            try
            {
                await _app.StopAsync(grace.Token);
            }
            catch (OperationCanceledException)
            {
                // Connections that did not finish within the grace period were aborted by Kestrel.
            }
        }

        await _app.DisposeAsync();
        _stopping.Dispose();
        _certificates?.Dispose();
    }
}
