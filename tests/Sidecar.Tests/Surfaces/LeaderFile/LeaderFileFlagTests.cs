using System.Text.Json;
using LeaderSidecar.Election;
using LeaderSidecar.Surfaces.LeaderFile;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Surfaces.LeaderFile;

public sealed class LeaderFileFlagTests : IDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);
    private readonly TempDirectory _dir = new();
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 25, 2, 4, 12, TimeSpan.Zero));
    private readonly DiskGate _disk = new();
    private readonly LeaderFileFlag _flag;
    private readonly string _path;

    public LeaderFileFlagTests()
    {
        _path = _dir.File("leader");
        _flag = new LeaderFileFlag(_path, _time, NullLogger<LeaderFileFlag>.Instance, _disk.BeforeIo);
    }

    [Fact]
    public async Task Publishing_returns_while_the_writer_is_stuck_on_the_disk()
    {
        var state = new LeadershipState(new ElectionOptions { Identity = "me", LeaseName = "app" }, _time, NullLogger<LeadershipState>.Instance);
        state.Subscribe(_flag.Apply);
        await _disk.WaitEnteredAsync(revision: 1);
        _disk.Hold();
        try
        {
            // The election loop's publish path: with the disk stuck, it must still return at once.
            var first = Task.Run(() => state.Publish(Leader(0) with { Revision = 0 }));
            await first.WaitAsync(Deadline);
            await _disk.WaitEnteredAsync(revision: 2);
            var second = Task.Run(() => state.Publish(Leader(0) with { Term = 2 }));
            await second.WaitAsync(Deadline);

            Assert.Equal(3, state.Current.Revision);
            Assert.False(File.Exists(_path));
        }
        finally
        {
            _disk.Release();
        }

        await Poll.UntilAsync(() => Task.FromResult(Revision() == 3), Deadline, "the newest status in the file");
    }

    [Fact]
    public async Task The_newest_status_wins_and_intermediate_ones_are_skipped()
    {
        _disk.Hold();
        _flag.Apply(Leader(1));
        await _disk.WaitEnteredAsync(revision: 1);
        _flag.Apply(Leader(2));
        _flag.Apply(Unknown(3));
        _flag.Apply(Leader(4));
        _disk.Release();

        await Poll.UntilAsync(() => Task.FromResult(Revision() == 4), Deadline, "revision 4 in the file");
        Assert.Equal([1, 4], _disk.Revisions);
    }

    [Fact]
    public async Task The_release_can_wait_until_the_file_is_gone()
    {
        _flag.Apply(Leader(1));
        await Poll.UntilAsync(() => Task.FromResult(File.Exists(_path)), Deadline, "the leader file");
        _disk.Hold();
        _flag.Apply(Unknown(2));
        await _disk.WaitEnteredAsync(revision: 2);

        var removed = _flag.WaitRemovedAsync(CancellationToken.None);

        Assert.False(removed.IsCompleted);
        Assert.True(File.Exists(_path));
        _disk.Release();
        await removed.WaitAsync(Deadline);
        Assert.False(File.Exists(_path));
        await _flag.WaitRemovedAsync(CancellationToken.None).WaitAsync(Deadline);
    }

    [Fact]
    public async Task Waiting_for_the_removal_ends_when_the_written_claim_runs_out()
    {
        _flag.Apply(Leader(1, claimSeconds: 10));
        await Poll.UntilAsync(() => Task.FromResult(File.Exists(_path)), Deadline, "the leader file");
        _disk.Hold();
        try
        {
            _flag.Apply(Unknown(2));
            await _disk.WaitEnteredAsync(revision: 2);
            var removed = _flag.WaitRemovedAsync(CancellationToken.None);
            _time.Advance(TimeSpan.FromSeconds(9));
            Assert.False(removed.IsCompleted);

            // The disk hangs past the file's validUntil: from then on the file itself says it no
            // longer counts, so the release need not wait longer.
            _time.Advance(TimeSpan.FromSeconds(1));

            await removed.WaitAsync(Deadline);
            Assert.True(File.Exists(_path));
        }
        finally
        {
            _disk.Release();
        }
    }

    [Fact]
    public async Task Nothing_is_waited_for_when_no_leader_file_was_written()
    {
        _flag.Apply(Unknown(1));

        await _flag.WaitRemovedAsync(CancellationToken.None).WaitAsync(Deadline);
    }

    [Fact]
    public async Task A_status_whose_claim_ran_out_while_the_disk_stalled_is_not_written_as_leader()
    {
        _disk.Hold();
        _flag.Apply(Leader(1, claimSeconds: 10));
        await _disk.WaitEnteredAsync(revision: 1);
        _flag.Apply(Leader(2, claimSeconds: 5));
        _time.Advance(TimeSpan.FromSeconds(6));
        _disk.Release();

        // Revision 1 was taken before its claim ran out and is written; revision 2's claim is
        // over when the writer takes it, so it removes the file instead.
        await _disk.WaitEnteredAsync(revision: 2);
        await _flag.WaitRemovedAsync(CancellationToken.None).WaitAsync(Deadline);
        Assert.False(File.Exists(_path));
    }

    [Fact]
    public async Task A_link_planted_at_the_old_predictable_temporary_name_is_not_followed()
    {
        using var elsewhere = new TempDirectory();
        var precious = elsewhere.File("precious");
        await File.WriteAllTextAsync(precious, "keep");
        var guessed = $"{_path}.{Environment.ProcessId}.tmp";
        File.CreateSymbolicLink(guessed, precious);

        _flag.Apply(Leader(1));

        await Poll.UntilAsync(() => Task.FromResult(Revision() == 1), Deadline, "the leader file");
        Assert.Equal("keep", await File.ReadAllTextAsync(precious));
        Assert.Null(new FileInfo(_path).LinkTarget);
        Assert.Equal(precious, new FileInfo(guessed).LinkTarget);
    }

    [Fact]
    public void Temporary_names_are_random()
    {
        var first = LeaderFileFlag.TemporaryPath(_path);
        var second = LeaderFileFlag.TemporaryPath(_path);

        Assert.NotEqual(first, second);
        Assert.Matches(@"/\.leader\.[0-9a-f]{32}\.tmp\z", first);
        Assert.Equal(_dir.Path, Path.GetDirectoryName(first));
    }

    [Fact]
    public async Task A_link_at_the_temporary_name_is_never_followed()
    {
        using var elsewhere = new TempDirectory();
        var precious = elsewhere.File("precious");
        await File.WriteAllTextAsync(precious, "keep");
        var temporary = LeaderFileFlag.TemporaryPath(_path);
        File.CreateSymbolicLink(temporary, precious);

        Assert.ThrowsAny<IOException>(() => LeaderFileFlag.WriteAtomically(_path, temporary, "{}"u8.ToArray()));

        Assert.Equal("keep", await File.ReadAllTextAsync(precious));
        Assert.False(File.Exists(_path));
        Assert.Equal(precious, new FileInfo(temporary).LinkTarget);
    }

    [Fact]
    public async Task Prepare_removes_a_leftover_file_and_its_own_temporary_files_only()
    {
        await File.WriteAllTextAsync(_path, "left over");
        var ours = LeaderFileFlag.TemporaryPath(_path);
        await File.WriteAllTextAsync(ours, "half written");
        var other = _dir.File(".leader.notes.tmp");
        await File.WriteAllTextAsync(other, "not ours");

        Assert.Null(_flag.Prepare());

        Assert.False(File.Exists(_path));
        Assert.False(File.Exists(ours));
        Assert.True(File.Exists(other));
    }

    public void Dispose()
    {
        _disk.Release();
        _flag.Dispose();
        _dir.Dispose();
    }

    private long? Revision()
    {
        try
        {
            using var status = JsonDocument.Parse(File.ReadAllBytes(_path));
            Assert.Equal("LEADER", status.RootElement.GetProperty("role").GetString());
            return status.RootElement.GetProperty("revision").GetInt64();
        }
        catch (FileNotFoundException)
        {
            return null;
        }
    }

    private LeadershipStatus Leader(long revision, int claimSeconds = 10) => new()
    {
        Identity = "me",
        Role = Role.Leader,
        Holder = "me",
        Term = 1,
        LeaseUid = "uid",
        LeaseName = "app",
        LeaseNamespace = "default",
        ClaimDeadline = _time.GetTimestamp() + (claimSeconds * _time.TimestampFrequency),
        ValidUntil = _time.GetUtcNow().AddSeconds(claimSeconds),
        Revision = revision,
    };

    private static LeadershipStatus Unknown(long revision) => new()
    {
        Identity = "me",
        Role = Role.Unknown,
        LeaseName = "app",
        LeaseNamespace = "default",
        Revision = revision,
    };

    /// <summary>Stands for the disk: the test can make it hang, and sees which statuses reached it.</summary>
    private sealed class DiskGate
    {
        private readonly ManualResetEventSlim _open = new(initialState: true);
        private readonly List<long> _revisions = [];

        public long[] Revisions
        {
            get
            {
                lock (_revisions)
                {
                    return [.. _revisions];
                }
            }
        }

        public void Hold() => _open.Reset();

        public void Release() => _open.Set();

        public void BeforeIo(LeadershipStatus status)
        {
            lock (_revisions)
            {
                _revisions.Add(status.Revision);
            }

            _open.Wait();
        }

        /// <summary>Waits until the writer reached the disk with <paramref name="revision"/>.</summary>
        public Task WaitEnteredAsync(long revision) =>
            Poll.UntilAsync(() => Task.FromResult(Revisions.Contains(revision)), Deadline, $"the writer at revision {revision}");
    }
}
