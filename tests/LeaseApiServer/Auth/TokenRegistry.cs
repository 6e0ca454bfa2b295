using System.Collections.Concurrent;

namespace LeaderSidecar.Testing.LeaseApi.Auth;

/// <summary>
/// Static-token authentication plus RBAC in one place. Tokens can be added, removed and rotated while the
/// server runs; a request is judged by the registry as it is at that moment. With
/// <see cref="Enabled"/> off every request is served as an admin, as a server without authn/authz would.
/// </summary>
public sealed class TokenRegistry
{
    private readonly ConcurrentDictionary<string, ApiUser> _users = new(StringComparer.Ordinal);

    internal TokenRegistry(bool enabled) => Enabled = enabled;

    /// <summary>When off, no token is needed and everything is allowed.</summary>
    public bool Enabled { get; set; }

    /// <summary>Adds a token, or changes what an existing token stands for.</summary>
    public void Set(string token, ApiUser user)
    {
        ArgumentException.ThrowIfNullOrEmpty(token);
        ArgumentNullException.ThrowIfNull(user);
        _users[token] = user;
    }

    /// <summary>Adds a token for a user with the given rules.</summary>
    public ApiUser Set(string token, string userName, params LeaseRule[] rules)
    {
        var user = new ApiUser(userName, rules);
        Set(token, user);
        return user;
    }

    /// <returns>Whether the token was known.</returns>
    public bool Remove(string token) => _users.TryRemove(token, out _);

    /// <summary>Token rotation: the user of <paramref name="oldToken"/> is now reached by
    /// <paramref name="newToken"/>, and the old token stops working at once.</summary>
    public void Rotate(string oldToken, string newToken)
    {
        if (!_users.TryRemove(oldToken, out var user))
        {
            throw new KeyNotFoundException("unknown token");
        }

        Set(newToken, user);
    }

    internal ApiUser? Authenticate(string? token)
    {
        if (!Enabled)
        {
            return token is not null && _users.TryGetValue(token, out var known) ? known : ApiUser.Admin("system:admin");
        }

        return token is not null && _users.TryGetValue(token, out var user) ? user : null;
    }

    internal bool Authorize(ApiUser user, ApiVerb verb, string namespaceName, string? name, string resource = LeaseRule.Leases) =>
        !Enabled || user.Allows(verb, namespaceName, name, resource);

    internal bool AuthorizeEvents(ApiUser user, ApiVerb verb, string namespaceName) =>
        !Enabled || user.AllowsEvents(verb, namespaceName);
}
