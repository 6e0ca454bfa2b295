using System.Diagnostics;
using System.Runtime.InteropServices;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>One of the apps under <c>examples/</c>, run as a real process; its stdout is collected line by line.</summary>
internal sealed class ExampleProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Lock _gate = new();
    private readonly List<string> _lines = [];
    private readonly List<string> _errors = [];

    private ExampleProcess(Process process)
    {
        _process = process;
    }

    public string Name { get; private init; } = "";

    /// <summary>The stdout lines so far.</summary>
    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_gate)
            {
                return [.. _lines];
            }
        }
    }

    /// <summary>Everything the process printed, for failure messages.</summary>
    public string Transcript
    {
        get
        {
            lock (_gate)
            {
                return $"{Name} stdout:\n  {string.Join("\n  ", _lines)}\n{Name} stderr:\n  {string.Join("\n  ", _errors)}";
            }
        }
    }

    public static ExampleProcess Start(string name, string fileName, IEnumerable<string> args, IReadOnlyDictionary<string, string> environment)
    {
        var info = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        // Only the addresses the test gives; nothing leaks in from the machine.
        foreach (var variable in new[] { "LEADER_URL", "LEADER_GRPC", "LEADER_CONTROL_TOKEN_FILE", "LEADERSHIP_PROTO", "PYTHONPATH" })
        {
            info.Environment.Remove(variable);
        }

        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }

        var example = new ExampleProcess(Process.Start(info)!) { Name = name };
        example._process.OutputDataReceived += (_, e) => example.Add(example._lines, e.Data);
        example._process.ErrorDataReceived += (_, e) => example.Add(example._errors, e.Data);
        example._process.BeginOutputReadLine();
        example._process.BeginErrorReadLine();
        return example;
    }

    /// <summary>Waits until the stdout lines so far satisfy <paramref name="condition"/>.</summary>
    public Task WaitForAsync(Func<IReadOnlyList<string>, bool> condition, TimeSpan deadline, string what) =>
        Poll.UntilAsync(
            () =>
            {
                if (_process.HasExited && !condition(Lines))
                {
                    Assert.Fail($"{Name} exited with {_process.ExitCode} before {what}\n{Transcript}");
                }

                return Task.FromResult(condition(Lines));
            },
            deadline,
            $"{what}\n{Transcript}");

    /// <summary>Sends SIGTERM and returns the exit code; all output has been read by then.</summary>
    public async Task<int> TerminateAsync(TimeSpan deadline)
    {
        _ = Kill(_process.Id, 15);
        using var cancel = new CancellationTokenSource(deadline);
        try
        {
            await _process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"{Name} did not exit within {deadline.TotalSeconds} s of SIGTERM\n{Transcript}");
        }

        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    private void Add(List<string> lines, string? line)
    {
        if (line is not null)
        {
            lock (_gate)
            {
                lines.Add(line);
            }
        }
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
