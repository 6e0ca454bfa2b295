using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace LeaderSidecar.Tests.Stores;

/// <summary>
/// A server process a test started on loopback: paused with SIGSTOP and resumed, killed, and
/// started again on the same port and data by the launcher's own <see cref="LaunchAsync"/>.
/// </summary>
internal abstract class ServerProcess
{
    private static readonly HashSet<int> HandedOut = [];
    private bool _paused;

    /// <summary>The running server; null before the first launch and after a stop.</summary>
    protected Process? Server { get; set; }

    /// <summary>Whether the process runs and is not paused.</summary>
    public bool IsRunning => Server is { HasExited: false } && !_paused;

    /// <summary>
    /// A loopback port nobody listens on (bound and released at once), and never one handed out
    /// before in this test run: two servers started in parallel could otherwise be given the same
    /// free port, and the one that lost the bind would seem to answer through the other.
    /// </summary>
    public static int FreePort()
    {
        while (true)
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var port = ((IPEndPoint)listener.LocalEndpoint).Port;
            lock (HandedOut)
            {
                if (HandedOut.Add(port))
                {
                    return port;
                }
            }
        }
    }

    /// <summary>SIGSTOP: the server stops answering; its sockets stay open.</summary>
    public void Pause()
    {
        _paused = true;
        _ = Signal(Server!.Id, 19);
    }

    /// <summary>SIGCONT after <see cref="Pause"/>.</summary>
    public void Resume()
    {
        if (_paused && Server is { HasExited: false })
        {
            _ = Signal(Server.Id, 18);
        }

        _paused = false;
    }

    /// <summary>SIGKILL, then a new server on the same port and data, once it answers.</summary>
    public async Task RestartAsync()
    {
        await StopAsync();
        await LaunchAsync();
    }

    /// <summary>SIGKILL: every connection breaks at once.</summary>
    public async Task StopAsync()
    {
        if (Server is { } process)
        {
            Resume();
            if (!process.HasExited)
            {
                process.Kill();
                await process.WaitForExitAsync();
            }

            process.Dispose();
            Server = null;
        }
    }

    /// <summary>Starts the server on its port and data, and returns once it answers.</summary>
    protected abstract Task LaunchAsync();

    /// <summary>Sends <paramref name="signal"/> to <paramref name="pid"/> (kill(2)).</summary>
    protected static int Signal(int pid, int signal) => Kill(pid, signal);

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
