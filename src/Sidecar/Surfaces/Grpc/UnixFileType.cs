using System.Runtime.InteropServices;
using System.Text;

namespace LeaderSidecar.Surfaces.Grpc;

/// <summary>What kind of file a path names, without following a symbolic link at its end.</summary>
internal enum UnixFileKind
{
    Missing,
    Socket,
    SymbolicLink,

    /// <summary>A regular file, a directory, a FIFO or a device.</summary>
    Other,

    /// <summary>The type could not be read (no <c>statx</c>, or an error other than "missing").</summary>
    Unknown,
}

/// <summary>
/// <c>lstat</c>'s file type, which .NET does not expose: its file APIs tell a directory from a file
/// and see symbolic links, but not a socket from a regular file. Read with Linux's <c>statx</c>,
/// whose layout is the same on every architecture (unlike <c>struct stat</c>).
/// </summary>
internal static partial class UnixFileType
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxType = 0x1;
    private const int ModeOffset = 28;
    private const int StatxSize = 256;
    private const int FileTypeMask = 0xF000;
    private const int SocketType = 0xC000;
    private const int SymbolicLinkType = 0xA000;
    private const int NoSuchFile = 2;
    private const int NotADirectory = 20;

    public static UnixFileKind Of(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            return File.Exists(path) || Directory.Exists(path) || new FileInfo(path).LinkTarget is not null ? UnixFileKind.Unknown : UnixFileKind.Missing;
        }

        var buffer = new byte[StatxSize];
        var name = Encoding.UTF8.GetBytes(path + "\0");
        int result;
        try
        {
            result = Statx(AtFdCwd, name, AtSymlinkNoFollow, StatxType, buffer);
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return UnixFileKind.Unknown;
        }

        if (result != 0)
        {
            return Marshal.GetLastPInvokeError() is NoSuchFile or NotADirectory ? UnixFileKind.Missing : UnixFileKind.Unknown;
        }

        return (BitConverter.ToUInt16(buffer, ModeOffset) & FileTypeMask) switch
        {
            SocketType => UnixFileKind.Socket,
            SymbolicLinkType => UnixFileKind.SymbolicLink,
            _ => UnixFileKind.Other,
        };
    }

    // Only arrays of bytes cross: no string marshalling, no unsafe code.
    [DllImport("libc", EntryPoint = "statx", SetLastError = true)]
    private static extern int Statx(int directory, byte[] path, int flags, uint mask, byte[] buffer);
}
