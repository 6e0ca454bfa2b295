using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using LeaderSidecar.Stores.LocalFile;

namespace LeaderSidecar.Tests.Stores.LocalFile;

[SupportedOSPlatform("linux")]
public sealed class LeaseDirectoryTests : IDisposable
{
    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private readonly TempDirectory _dir = new();

    [Fact]
    public void The_default_is_per_user_in_tmp_whatever_the_environment()
    {
        // Not XDG_RUNTIME_DIR: copies of one user started with and without it would not meet.
        Assert.Equal($"/tmp/leader-sidecar-{geteuid()}", LeaseDirectory.Default());
    }

    [Fact]
    public void A_missing_default_directory_is_created_private()
    {
        var directory = _dir.File("leases");

        Assert.Null(LeaseDirectory.Prepare(directory, chosenByUser: false));

        Assert.Equal(Private, File.GetUnixFileMode(directory));
    }

    [Fact]
    public void A_default_directory_owned_by_another_user_is_refused()
    {
        string directory;
        if (geteuid() == 0)
        {
            directory = _dir.File("squatted");
            Directory.CreateDirectory(directory, Private);
            Assert.Equal(0, chown(directory, 65534, 65534));
        }
        else
        {
            // Not root, so we cannot give a directory away; the root directory is someone else's.
            directory = "/";
        }

        var problem = LeaseDirectory.Prepare(directory, chosenByUser: false);

        Assert.NotNull(problem);
        Assert.Contains("not to this process", problem, StringComparison.Ordinal);
        Assert.DoesNotContain("\n", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_squatted_default_directory_stops_the_store_with_one_line()
    {
        var directory = _dir.File("squatted");
        Directory.CreateDirectory(directory);
        File.SetUnixFileMode(directory, Private | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute);

        var problem = new FileLeaseStore(directory, "default", "app", TimeProvider.System, chosenByUser: false).CheckUsable();

        Assert.StartsWith($"lease directory {directory} is not usable: every user may write it (mode 0733)", problem, StringComparison.Ordinal);
        Assert.DoesNotContain("\n", problem, StringComparison.Ordinal);
        Assert.Empty(Directory.EnumerateFileSystemEntries(directory));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_world_writable_directory_is_refused_even_when_given_and_sticky(bool chosenByUser)
    {
        var directory = _dir.File("shared");
        Directory.CreateDirectory(directory);
        File.SetUnixFileMode(directory, (UnixFileMode)0b1_111_111_111);

        var problem = LeaseDirectory.Prepare(directory, chosenByUser);

        Assert.Equal("every user may write it (mode 1777), so anybody could create or rewrite the lease; use a directory only you or your group can write", problem);
    }

    [Fact]
    public void A_group_writable_directory_is_accepted_only_when_given()
    {
        var directory = _dir.File("team");
        Directory.CreateDirectory(directory);
        File.SetUnixFileMode(directory, Private | UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute | UnixFileMode.SetGroup);

        Assert.Null(LeaseDirectory.Prepare(directory, chosenByUser: true));
        Assert.Contains("its group may write it (mode 2770)", LeaseDirectory.Prepare(directory, chosenByUser: false), StringComparison.Ordinal);
    }

    [Fact]
    public void A_given_directory_may_belong_to_another_user()
    {
        if (geteuid() != 0)
        {
            return;
        }

        var directory = _dir.File("theirs");
        Directory.CreateDirectory(directory, Private);
        Assert.Equal(0, chown(directory, 65534, 65534));

        Assert.Null(LeaseDirectory.Prepare(directory, chosenByUser: true));
    }

    [Fact]
    public void A_default_directory_that_is_a_link_is_refused_and_nothing_is_created_through_it()
    {
        using var elsewhere = new TempDirectory();
        var target = elsewhere.File("target");
        var link = _dir.File("leases");
        File.CreateSymbolicLink(link, target);

        var problem = LeaseDirectory.Prepare(link, chosenByUser: false);

        Assert.StartsWith("it is a symbolic link", problem, StringComparison.Ordinal);
        Assert.False(Path.Exists(target));

        Directory.CreateDirectory(target, Private);
        Assert.StartsWith("it is a symbolic link", LeaseDirectory.Prepare(link, chosenByUser: false), StringComparison.Ordinal);
        Assert.Null(LeaseDirectory.Prepare(link, chosenByUser: true));
    }

    public void Dispose() => _dir.Dispose();

    [DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint geteuid();

    [DllImport("libc", EntryPoint = "chown", SetLastError = true)]
    private static extern int chown([MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint owner, uint group);
}
