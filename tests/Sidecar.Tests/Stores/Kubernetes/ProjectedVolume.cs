using System.Runtime.InteropServices;

namespace LeaderSidecar.Tests.Stores.Kubernetes;

/// <summary>
/// A service-account volume laid out as the kubelet's atomic writer does it: the files live in a
/// timestamped directory (<c>..2026_01_01_00_00_00.1</c>), <c>..data</c> links to it and each
/// visible name (<c>token</c>) links to <c>..data/token</c>. An update writes a new timestamped
/// directory and swaps <c>..data</c> with one rename, so the visible links never change.
/// </summary>
internal sealed class ProjectedVolume(string path)
{
    private int _generation;
    private string? _current;

    public string Path { get; } = path;

    /// <summary>Writes the files as one new generation and swaps <c>..data</c> to it atomically.</summary>
    public void Write(IReadOnlyDictionary<string, string> files)
    {
        var generation = $"..2026_01_01_00_00_00.{++_generation}";
        Directory.CreateDirectory(System.IO.Path.Combine(Path, generation));
        foreach (var (name, content) in files)
        {
            File.WriteAllText(System.IO.Path.Combine(Path, generation, name), content);
        }

        var staging = System.IO.Path.Combine(Path, "..data_tmp");
        File.CreateSymbolicLink(staging, generation);

        // rename(2) replaces the old link in one step; File.Move refuses a link to a directory.
        if (Rename(staging, System.IO.Path.Combine(Path, "..data")) != 0)
        {
            throw new IOException($"rename failed: errno {Marshal.GetLastPInvokeError()}");
        }

        foreach (var name in files.Keys)
        {
            var visible = System.IO.Path.Combine(Path, name);
            if (new FileInfo(visible).LinkTarget is null)
            {
                File.CreateSymbolicLink(visible, System.IO.Path.Combine("..data", name));
            }
        }

        if (_current is { } old)
        {
            Directory.Delete(System.IO.Path.Combine(Path, old), recursive: true);
        }

        _current = generation;
    }

    [DllImport("libc", EntryPoint = "rename", SetLastError = true)]
    private static extern int Rename([MarshalAs(UnmanagedType.LPUTF8Str)] string from, [MarshalAs(UnmanagedType.LPUTF8Str)] string to);
}
