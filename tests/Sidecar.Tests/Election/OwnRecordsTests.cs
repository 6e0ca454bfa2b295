using LeaderSidecar.Election;

namespace LeaderSidecar.Tests.Election;

/// <summary>The one rule for "is this record ours", on its own.</summary>
public sealed class OwnRecordsTests
{
    private static readonly DateTimeOffset Start = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
    private readonly OwnRecords _own = new("a");

    private static LeaseRecord Claim(int second, int term = 3, string holder = "a") =>
        new(holder, 15, Start, Start.AddSeconds(second), term);

    [Fact]
    public void Our_last_acknowledged_write_is_ours()
    {
        var written = new LeaseSnapshot(Claim(0), "7", "uid");
        _own.Written(written);

        Assert.True(_own.IsOurs(written, claiming: false));
        Assert.True(_own.IsLastWrite(written with { }));
    }

    [Fact]
    public void A_record_naming_us_that_we_did_not_write_is_not_ours()
    {
        _own.Written(new LeaseSnapshot(Claim(0), "7", "uid"));

        // A hand edit, a previous process of the same identity, or a restored backup.
        Assert.False(_own.IsOurs(new LeaseSnapshot(Claim(5), "9", "uid"), claiming: true));
        Assert.False(_own.IsOurs(new LeaseSnapshot(Claim(0), "7", "other-uid"), claiming: true));
        Assert.False(new OwnRecords("a").IsOurs(new LeaseSnapshot(Claim(0), "1", "uid"), claiming: false));
    }

    [Fact]
    public void Another_holder_is_never_ours()
    {
        var b = new LeaseSnapshot(Claim(0, holder: "b"), "7", "uid");
        _own.Attempting(b.Record);

        Assert.False(_own.IsOurs(b, claiming: true));
    }

    [Fact]
    public void Every_unanswered_attempt_since_the_last_acknowledged_write_is_ours()
    {
        // Attempt 1 landed but its answer was lost; attempt 2 (over the old version) conflicted.
        _own.Written(new LeaseSnapshot(Claim(0), "7", "uid"));
        _own.Attempting(Claim(2));
        _own.Attempting(Claim(4));

        Assert.True(_own.IsOurs(new LeaseSnapshot(Claim(2), "8", "uid"), claiming: false));
        Assert.True(_own.IsOurs(new LeaseSnapshot(Claim(4), "8", "uid"), claiming: false));
    }

    [Fact]
    public void An_acknowledged_write_forgets_the_attempts_before_it()
    {
        _own.Attempting(Claim(2));
        _own.Written(new LeaseSnapshot(Claim(4), "9", "uid"));

        Assert.False(_own.IsUnansweredAttempt(new LeaseSnapshot(Claim(2), "8", "uid")));
    }

    [Fact]
    public void Only_a_bounded_number_of_attempts_is_remembered()
    {
        for (var i = 0; i <= OwnRecords.MaxAttempts; i++)
        {
            _own.Attempting(Claim(i));
        }

        Assert.False(_own.IsUnansweredAttempt(new LeaseSnapshot(Claim(0), "1", "uid")));
        Assert.True(_own.IsUnansweredAttempt(new LeaseSnapshot(Claim(OwnRecords.MaxAttempts), "1", "uid")));
    }

    [Fact]
    public void While_claiming_our_last_record_at_a_new_version_is_ours_and_afterwards_it_is_not()
    {
        // A label edit moves a Kubernetes resourceVersion without touching the spec.
        _own.Written(new LeaseSnapshot(Claim(0), "7", "uid"));
        var relabelled = new LeaseSnapshot(Claim(0), "8", "uid");

        Assert.True(_own.IsOurs(relabelled, claiming: true));
        Assert.False(_own.IsOurs(relabelled, claiming: false));
    }

    [Fact]
    public void Earlier_records_of_the_current_claim_are_recognised_but_not_ours()
    {
        _own.Written(new LeaseSnapshot(Claim(4), "9", "uid"));
        var echo = new LeaseSnapshot(Claim(2), "8", "uid");

        Assert.True(_own.IsEarlierInTerm(echo));
        Assert.False(_own.IsOurs(echo, claiming: true));
        Assert.False(_own.IsEarlierInTerm(new LeaseSnapshot(Claim(4), "9", "uid")));
        Assert.False(_own.IsEarlierInTerm(new LeaseSnapshot(Claim(2, term: 2), "5", "uid")));
        Assert.False(_own.IsEarlierInTerm(new LeaseSnapshot(Claim(2) with { AcquireTime = Start.AddSeconds(-60) }, "8", "uid")));
        Assert.False(_own.IsEarlierInTerm(new LeaseSnapshot(Claim(2), "8", "other-uid")));
        Assert.False(_own.IsEarlierInTerm(null));
    }

    [Fact]
    public void After_a_release_no_earlier_record_counts_as_the_current_claim()
    {
        _own.Written(new LeaseSnapshot(Claim(4), "9", "uid"));
        _own.Written(new LeaseSnapshot(new LeaseRecord("", 1, Start, Start, 3), "10", "uid"));

        Assert.False(_own.IsEarlierInTerm(new LeaseSnapshot(Claim(4), "9", "uid")));
        Assert.False(_own.IsOurs(new LeaseSnapshot(Claim(4), "9", "uid"), claiming: false));
    }
}
