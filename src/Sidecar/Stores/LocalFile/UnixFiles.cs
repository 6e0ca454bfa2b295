using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Microsoft.Win32.SafeHandles;

namespace LeaderSidecar.Stores.LocalFile;

/// <summary>
/// The few Linux system calls .NET does not offer: opening a file without following a symbolic
/// link (<c>O_NOFOLLOW</c>), <c>flock</c> on such a file, the effective uid and a directory's owner
/// (<c>statx</c>, whose layout is the same on every architecture).
/// </summary>
/// <remarks>
/// .NET opens every path following symbolic links. In a directory someone else can write, a link
/// planted at the name of our lock file would make us create, lock or read whatever it points to,
/// with our privileges. Only the last path component is protected; the directory itself is checked
/// by <see cref="LeaseDirectory"/>.
/// </remarks>
internal static partial class UnixFiles
{
    private const int OpenReadOnly = 0;
    private const int OpenReadWrite = 2;
    private const int OpenCreate = 0x40;
    private const int OpenCloseOnExec = 0x80000;
    private const int LockExclusive = 2;
    private const int LockNonBlocking = 4;
    private const int AtCurrentDirectory = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxBasicStats = 0x7ff;
    private const int Interrupted = 4;

    /// <summary>ELOOP: what <c>open</c> with <c>O_NOFOLLOW</c> answers for a symbolic link.</summary>
    private const int SymlinkLoop = 40;

    /// <summary>EWOULDBLOCK: <c>flock</c> says another process holds the lock.</summary>
    public const int WouldBlock = 11;

    /// <summary>
    /// Whether this code can run here: Linux, on an architecture whose <c>open</c> flags we know.
    /// Elsewhere (development on macOS) the store falls back to .NET's own file API.
    /// </summary>
    [SupportedOSPlatformGuard("linux")]
    public static bool Supported => OperatingSystem.IsLinux() && NoFollowFlag != 0;

    /// <summary><c>O_NOFOLLOW</c>: the only <c>open</c> flag used here whose value differs between Linux architectures.</summary>
    private static int NoFollowFlag => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 or Architecture.X86 or Architecture.S390x or Architecture.RiscV64 or Architecture.LoongArch64 => 0x20000,
        Architecture.Arm64 or Architecture.Arm or Architecture.Armv6 or Architecture.Ppc64le => 0x8000,
        _ => 0,
    };

    /// <summary>The effective uid of this process.</summary>
    public static uint EffectiveUid => GetEffectiveUid();

    /// <summary>
    /// Opens <paramref name="path"/> for reading, or for reading and writing, creating it when
    /// <paramref name="create"/> and it is missing, and never through a symbolic link.
    /// </summary>
    /// <exception cref="IOException">A symbolic link or another failure; <see cref="FileNotFoundException"/> when missing.</exception>
    /// <exception cref="UnauthorizedAccessException">Permission denied.</exception>
    public static FileStream Open(string path, bool write, bool create, UnixFileMode mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite)
    {
        var flags = (write ? OpenReadWrite : OpenReadOnly) | (create ? OpenCreate : 0) | OpenCloseOnExec | NoFollowFlag;
        int fd;
        do
        {
            fd = OpenFile(path, flags, (uint)mode);
        }
        while (fd < 0 && Marshal.GetLastPInvokeError() == Interrupted);

        if (fd < 0)
        {
            throw Error(Marshal.GetLastPInvokeError(), path);
        }

        var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            return new FileStream(handle, write ? FileAccess.ReadWrite : FileAccess.Read, bufferSize: 0);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Whether <paramref name="e"/> (from <see cref="Open"/>) says the path is a symbolic link.</summary>
    public static bool IsSymbolicLink(IOException e) => e.HResult == SymlinkLoop;

    /// <summary>Takes an exclusive <c>flock</c> on <paramref name="file"/> without waiting.</summary>
    /// <exception cref="IOException">With <see cref="Exception.HResult"/> <see cref="WouldBlock"/> when another process holds it.</exception>
    public static void LockExclusiveNow(FileStream file, string path)
    {
        int result;
        do
        {
            result = Flock(file.SafeFileHandle, LockExclusive | LockNonBlocking);
        }
        while (result < 0 && Marshal.GetLastPInvokeError() == Interrupted);

        if (result < 0)
        {
            throw Error(Marshal.GetLastPInvokeError(), path);
        }
    }

    /// <summary>Owner, mode and type of <paramref name="path"/> itself (a symbolic link is not followed when <paramref name="follow"/> is false).</summary>
    /// <exception cref="IOException">The path cannot be examined; <see cref="FileNotFoundException"/> when missing.</exception>
    public static FileOwner Examine(string path, bool follow)
    {
        var buffer = new byte[256];
        if (Statx(AtCurrentDirectory, path, follow ? 0 : AtSymlinkNoFollow, StatxBasicStats, buffer) < 0)
        {
            throw Error(Marshal.GetLastPInvokeError(), path);
        }

        // struct statx: stx_uid at byte 20, stx_mode (16 bits) at 28, on every architecture.
        var uid = BitConverter.ToUInt32(buffer, 20);
        var mode = BitConverter.ToUInt16(buffer, 28);
        return new FileOwner(uid, mode);
    }

    private static Exception Error(int errno, string path) => errno switch
    {
        2 => new FileNotFoundException($"{path} does not exist", path),
        1 or 13 => new UnauthorizedAccessException($"{path}: {Marshal.GetPInvokeErrorMessage(errno)}"),
        SymlinkLoop => new IOException($"{path} is a symbolic link; refusing to follow it", errno),
        _ => new IOException($"{path}: {Marshal.GetPInvokeErrorMessage(errno)}", errno),
    };

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenFile(string path, int flags, uint mode);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    private static partial int Flock(SafeFileHandle fd, int operation);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int directory, string path, int flags, uint mask, [Out] byte[] buffer);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEffectiveUid();
}

/// <summary>What <see cref="UnixFiles.Examine"/> found: the owner's uid and the <c>st_mode</c> bits (type and permissions).</summary>
internal readonly record struct FileOwner(uint Uid, int Mode)
{
    public bool IsDirectory => (Mode & 0xF000) == 0x4000;

    public bool IsSymbolicLink => (Mode & 0xF000) == 0xA000;

    public bool GroupWritable => (Mode & 0x10) != 0;

    public bool OtherWritable => (Mode & 0x2) != 0;

    public bool Sticky => (Mode & 0x200) != 0;
}
