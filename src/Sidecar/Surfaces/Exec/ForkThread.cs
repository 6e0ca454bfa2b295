using System.Collections.Concurrent;
using System.Diagnostics;

namespace LeaderSidecar.Surfaces.Exec;

/// <summary>
/// Starts processes from one dedicated, long-lived thread. The parent-death signal COMMAND arms
/// (see <see cref="ExecChild"/>) fires when the thread that forked it ends; a thread-pool thread
/// may end whenever the pool shrinks, and would take a healthy COMMAND with it. This thread ends
/// only with the process, or on <see cref="Dispose"/> once no COMMAND runs.
/// </summary>
internal sealed class ForkThread : IDisposable
{
    private readonly BlockingCollection<(ProcessStartInfo Info, TaskCompletionSource<Process> Started)> _requests = [];

    public ForkThread()
    {
        new Thread(Run) { IsBackground = true, Name = "leader-sidecar exec" }.Start();
    }

    /// <summary>Starts <paramref name="info"/> on the thread; faults as <see cref="Process.Start()"/> would.</summary>
    public Task<Process> StartAsync(ProcessStartInfo info)
    {
        var started = new TaskCompletionSource<Process>(TaskCreationOptions.RunContinuationsAsynchronously);
        _requests.Add((info, started));
        return started.Task;
    }

    public void Dispose() => _requests.CompleteAdding();

    private void Run()
    {
        foreach (var (info, started) in _requests.GetConsumingEnumerable())
        {
            try
            {
                started.SetResult(Process.Start(info) ?? throw new InvalidOperationException("no process was started"));
            }
            catch (Exception e)
            {
                started.SetException(e);
            }
        }
    }
}
