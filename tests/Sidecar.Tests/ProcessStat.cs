namespace LeaderSidecar.Tests;

/// <summary>What <c>/proc/PID/stat</c> says about a process.</summary>
internal static class ProcessStat
{
    /// <summary>
    /// The fields after the command name (state, ppid, pgrp, session, ...), or null when there is
    /// no such process.
    /// </summary>
    public static string[]? Fields(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Whether the process has ended: no such process, or a zombie nobody reaped yet.</summary>
    public static bool Gone(int pid) => Fields(pid) is not { } fields || fields[0] is "Z" or "X";
}
