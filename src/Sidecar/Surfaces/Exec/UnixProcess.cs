using System.Runtime.InteropServices;

namespace LeaderSidecar.Surfaces.Exec;

/// <summary>
/// The Linux process calls exec mode needs and .NET does not offer: a new session, the
/// parent-death signal, <c>execv</c>, signalling a process group, and <c>access(X_OK)</c>.
/// </summary>
internal static partial class UnixProcess
{
    /// <summary>ESRCH: no such process (or process group).</summary>
    public const int NoSuchProcess = 3;

    /// <summary>ENOENT: no such file.</summary>
    public const int NoSuchFile = 2;

    private const int SetParentDeathSignal = 1; // PR_SET_PDEATHSIG
    private const int ExecutableOk = 1;         // X_OK
    private const int SetMask = 2;              // SIG_SETMASK
    private const int SigsetBytes = 128;        // sizeof(sigset_t) in glibc and musl
    private const int LastStandardSignal = 31;

    /// <summary>
    /// Sends <paramref name="signal"/> to the process group <paramref name="pid"/> leads, or, while
    /// the process has not made its own group yet (it starts in ours), to the process alone.
    /// Returns false when neither exists any more.
    /// </summary>
    public static bool SignalGroup(int pid, Signal signal)
    {
        if (Kill(-pid, signal.Number) == 0)
        {
            return true;
        }

        return Marshal.GetLastPInvokeError() == NoSuchProcess && Kill(pid, signal.Number) == 0;
    }

    /// <summary>SIGKILL to the process group <paramref name="pid"/> led, and never to a process of that number.</summary>
    public static void KillGroup(int pid) => _ = Kill(-pid, Signal.Kill.Number);

    /// <summary>Whether this process may execute <paramref name="path"/> (for root: some execute bit is set).</summary>
    public static bool IsExecutable(string path) => Access(path, ExecutableOk) == 0;

    /// <summary>The calling process's parent, by process id.</summary>
    public static int ParentId => GetParentId();

    /// <summary>Makes the calling process a session (and process group) leader; false if it already leads a group.</summary>
    public static bool NewSession() => SetSession() >= 0;

    /// <summary>Has the kernel send <paramref name="signal"/> to this process when the thread that forked it ends.</summary>
    public static bool SetDeathSignal(Signal signal) => Prctl(SetParentDeathSignal, (nuint)signal.Number, 0, 0, 0) == 0;

    /// <summary>
    /// Gives every standard signal its default action and unblocks all: an ignored signal (.NET
    /// ignores SIGPIPE) and the signal mask survive <c>execv</c>, and COMMAND should start as
    /// from a shell, not with the runtime's choices.
    /// </summary>
    public static unsafe void ResetSignals()
    {
        for (var signal = 1; signal <= LastStandardSignal; signal++)
        {
            if (signal != Signal.Kill.Number && signal != 19 /* SIGSTOP */)
            {
                _ = SetHandler(signal, 0 /* SIG_DFL */);
            }
        }

        var empty = stackalloc byte[SigsetBytes];
        new Span<byte>(empty, SigsetBytes).Clear();
        _ = SetThreadMask(SetMask, empty, null);
    }

    /// <summary>Replaces this process with <paramref name="path"/>; returns only on failure, with the errno.</summary>
    public static unsafe int Exec(string path, IReadOnlyList<string> argv)
    {
        var pointers = new nint[argv.Count + 1];
        try
        {
            for (var i = 0; i < argv.Count; i++)
            {
                pointers[i] = Marshal.StringToCoTaskMemUTF8(argv[i]);
            }

            fixed (nint* array = pointers)
            {
                _ = ExecV(path, array);
            }

            return Marshal.GetLastPInvokeError();
        }
        finally
        {
            foreach (var pointer in pointers)
            {
                Marshal.FreeCoTaskMem(pointer);
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "access", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Access(string path, int mode);

    [LibraryImport("libc", EntryPoint = "getppid")]
    private static partial int GetParentId();

    [LibraryImport("libc", EntryPoint = "setsid", SetLastError = true)]
    private static partial int SetSession();

    [LibraryImport("libc", EntryPoint = "prctl", SetLastError = true)]
    private static partial int Prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    [LibraryImport("libc", EntryPoint = "signal")]
    private static partial nint SetHandler(int signal, nint handler);

    [LibraryImport("libc", EntryPoint = "pthread_sigmask")]
    private static unsafe partial int SetThreadMask(int how, byte* set, byte* old);

    [LibraryImport("libc", EntryPoint = "execv", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int ExecV(string path, nint* argv);
}
