namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// What a daemon maps into its memory. OpenSSL (libcrypto and libssl, about 3.6 MiB of resident
/// memory) belongs only in a daemon that talks TLS: the file backend and the leader file need
/// neither a cryptographic hash nor a cryptographic random generator from it.
/// </summary>
public sealed class FootprintTests : IAsyncDisposable
{
    private readonly TempDirectory _dir = new();

    [Fact]
    public async Task A_file_backend_leader_with_a_leader_file_does_not_load_OpenSSL()
    {
        await using var daemon = await DaemonProcess.StartAsync(
            ["--lease-name", "footprint", "--lease-dir", _dir.Path, "--identity", "a", "--leader-file", _dir.File("leader")]);
        await Poll.UntilAsync(async () => await daemon.RoleAsync() == "LEADER", TimeSpan.FromSeconds(30), "a leads");
        await Poll.UntilAsync(() => Task.FromResult(File.Exists(_dir.File("leader"))), TimeSpan.FromSeconds(30), "the leader file is written");

        var maps = await File.ReadAllTextAsync($"/proc/{daemon.ProcessId}/maps");

        Assert.DoesNotContain("libcrypto", maps, StringComparison.Ordinal);
        Assert.DoesNotContain("libssl", maps, StringComparison.Ordinal);
    }

    public ValueTask DisposeAsync()
    {
        _dir.Dispose();
        return ValueTask.CompletedTask;
    }
}
