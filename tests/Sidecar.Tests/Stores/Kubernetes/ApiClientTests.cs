using LeaderSidecar.Stores.Kubernetes;

namespace LeaderSidecar.Tests.Stores.Kubernetes;

/// <summary>What of the API server's address may be logged.</summary>
public sealed class ApiClientTests
{
    [Theory]
    [InlineData("https://10.0.0.1:6443", "https://10.0.0.1:6443/")]
    [InlineData("https://alice:s3cret@api.example:6443", "https://redacted@api.example:6443/")]
    [InlineData("https://tok3n@api.example/prefix", "https://redacted@api.example/prefix")]
    [InlineData("https://api.example:6443/?access_token=tok3n", "https://api.example:6443/?redacted")]
    [InlineData("https://[fd00::1]:6443", "https://[fd00::1]:6443/")]
    public void User_info_and_query_are_redacted(string server, string logged)
    {
        Assert.Equal(logged, ApiClient.Redact(new Uri(server)));
    }
}
