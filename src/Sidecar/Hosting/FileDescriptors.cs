using System.Runtime.InteropServices;

namespace LeaderSidecar.Hosting;

/// <summary>
/// The process's file-descriptor limit (<c>RLIMIT_NOFILE</c>) and how many descriptors are open.
/// Every client connection takes one descriptor, and so does every lease-file read, lock and
/// write, so the connection limits are derived from these figures.
/// </summary>
internal static class FileDescriptors
{
    // RLIMIT_NOFILE on Linux (x86-64 and arm64 alike).
    private const int NoFile = 7;

    /// <summary>
    /// Raises the soft limit to the hard limit, as the .NET runtime does for JIT-compiled apps but
    /// native AOT does not: many hosts start processes with a soft limit of 1024 under a hard limit
    /// a thousand times higher, and only the soft one counts.
    /// </summary>
    /// <returns>The soft and hard limit afterwards, or null where they cannot be read (not Linux).</returns>
    public static (ulong Soft, ulong Hard)? RaiseSoftLimit()
    {
        if (!OperatingSystem.IsLinux() || GetRLimit(NoFile, out var limit) != 0)
        {
            return null;
        }

        if (limit.Current < limit.Maximum)
        {
            var raised = limit with { Current = limit.Maximum };
            if (SetRLimit(NoFile, raised) == 0)
            {
                limit = raised;
            }
        }

        return (limit.Current, limit.Maximum);
    }

    /// <summary>The soft limit now, or null where it cannot be read.</summary>
    public static ulong? SoftLimit() =>
        OperatingSystem.IsLinux() && GetRLimit(NoFile, out var limit) == 0 ? limit.Current : null;

    /// <summary>How many descriptors the process has open, or null where that cannot be counted.</summary>
    public static int? CountOpen()
    {
        try
        {
            // The enumeration's own descriptor is counted too; one more or less does not matter.
            return OperatingSystem.IsLinux() ? Directory.EnumerateFileSystemEntries("/proc/self/fd").Count() : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary><c>struct rlimit</c>: <c>rlim_t</c> is 64 bits on every 64-bit Linux.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private readonly record struct RLimit(ulong Current, ulong Maximum);

    [DllImport("libc", EntryPoint = "getrlimit")]
    private static extern int GetRLimit(int resource, out RLimit limit);

    [DllImport("libc", EntryPoint = "setrlimit")]
    private static extern int SetRLimit(int resource, in RLimit limit);
}
