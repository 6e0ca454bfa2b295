using System.Globalization;
using System.Text;
using System.Text.Json;
using LeaderSidecar.Testing.LeaseApi.Storage;

namespace LeaderSidecar.Testing.LeaseApi.Http;

/// <summary>The fields of a request body the server keeps (unknown fields are dropped, as by the real one).</summary>
internal sealed record DecodedLease(
    bool HasKind,
    string Name,
    string Namespace,
    string Uid,
    string ResourceVersion,
    IReadOnlyDictionary<string, string>? Labels,
    IReadOnlyDictionary<string, string>? Annotations,
    LeaseSpec Spec);

/// <summary>
/// Decodes a Lease request body with Go's rules and error wording: a syntax error is "the object provided
/// is unrecognized (must be of type Lease): couldn't get version/kind; json parse error: ..." followed by
/// the body shortened to 30 bytes; a wrong field type is "Lease in version "v1" cannot be handled as a
/// Lease: json: cannot unmarshal ...". Nulls mean "not set".
/// </summary>
internal static class LeaseDecoder
{
    private const string TypeMetaStruct =
        "struct { APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }";

    public static DecodedLease? Decode(byte[] body, out ApiStatus? error)
    {
        error = null;
        if (GoJsonSyntax.Validate(body) is { } syntaxError)
        {
            error = Unrecognized($"couldn't get version/kind; json parse error: {syntaxError}", body);
            return null;
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body);
        }
        catch (JsonException exception)
        {
            error = Unrecognized($"couldn't get version/kind; json parse error: {exception.Message}", body);
            return null;
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind is not (JsonValueKind.Object or JsonValueKind.Null))
            {
                error = Unrecognized(
                    $"couldn't get version/kind; json parse error: json: cannot unmarshal {GoType(root)} into Go value of type {TypeMetaStruct}",
                    body);
                return null;
            }

            try
            {
                var kind = TypeMetaField(root, "kind");
                var apiVersion = TypeMetaField(root, "apiVersion");
                if ((kind ?? "Lease") != "Lease" || (apiVersion ?? ApiJson.LeaseApiVersion) != ApiJson.LeaseApiVersion)
                {
                    var version = apiVersion?.Split('/')[^1] ?? "v1";
                    error = LeaseStatuses.BadRequest(
                        $"{kind ?? "Lease"} in version \"{version}\" cannot be handled as a Lease: no kind \"{kind ?? "Lease"}\" "
                        + $"is registered for version \"{apiVersion}\" in scheme \"pkg/api/legacyscheme/scheme.go:30\"");
                    return null;
                }

                return DecodeLease(root, kind is not null);
            }
            catch (InvalidDataException exception)
            {
                error = LeaseStatuses.BadRequest(exception.Message);
                return null;
            }
        }
    }

    private static DecodedLease DecodeLease(JsonElement root, bool hasKind)
    {
        var metadata = Member(root, "metadata", "Lease", "metadata", "v1.ObjectMeta");
        var spec = Member(root, "spec", "Lease", "spec", "v1.LeaseSpec");
        return new DecodedLease(
            hasKind,
            String(metadata, "name") ?? "",
            String(metadata, "namespace") ?? "",
            String(metadata, "uid") ?? "",
            String(metadata, "resourceVersion") ?? "",
            Map(metadata, "labels"),
            Map(metadata, "annotations"),
            new LeaseSpec
            {
                HolderIdentity = String(spec, "holderIdentity", "LeaseSpec", "spec"),
                LeaseDurationSeconds = Int32(spec, "leaseDurationSeconds"),
                AcquireTime = Time(spec, "acquireTime"),
                RenewTime = Time(spec, "renewTime"),
                LeaseTransitions = Int32(spec, "leaseTransitions"),
            });
    }

    private static ApiStatus Unrecognized(string problem, byte[] body) =>
        LeaseStatuses.BadRequest($"the object provided is unrecognized (must be of type Lease): {problem} ({Summarize(body)})");

    // apiserver's summarizeData(body, 30): JSON-looking text as is, anything else in hex.
    private static string Summarize(byte[] body) => body switch
    {
        [] => "<empty>",
        [(byte)'{', ..] => body.Length > 30 ? Encoding.UTF8.GetString(body, 0, 30) + " ..." : Encoding.UTF8.GetString(body),
        _ => body.Length > 30 ? Convert.ToHexStringLower(body, 0, 30) + " ..." : Convert.ToHexStringLower(body),
    };

    private static string? TypeMetaField(JsonElement root, string name)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty(name, out var value)
            || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : throw new InvalidDataException(
                $"the object provided is unrecognized (must be of type Lease): couldn't get version/kind; json parse error: "
                + $"json: cannot unmarshal {GoType(value)} into Go struct field .{name} of type string");
    }

    private static JsonElement? Member(JsonElement parent, string name, string structName, string path, string goType)
    {
        if (parent.ValueKind != JsonValueKind.Object || !parent.TryGetProperty(name, out var value)
            || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.Object ? value : throw Mismatch(value, $"{structName}.{path}", goType);
    }

    private static string? String(JsonElement? parent, string name, string structName = "ObjectMeta", string path = "metadata")
    {
        if (Field(parent, name) is not { } value)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : throw Mismatch(value, $"{structName}.{path}.{name}", "string");
    }

    private static int? Int32(JsonElement? spec, string name)
    {
        if (Field(spec, name) is not { } value)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number)
        {
            throw Mismatch(value, $"LeaseSpec.spec.{name}", "int32");
        }

        return value.TryGetInt32(out var number)
            ? number
            : throw new InvalidDataException(
                $"Lease in version \"v1\" cannot be handled as a Lease: json: cannot unmarshal number {value.GetRawText()} "
                + $"into Go struct field LeaseSpec.spec.{name} of type int32");
    }

    private static DateTimeOffset? Time(JsonElement? spec, string name)
    {
        if (Field(spec, name) is not { } value)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.String)
        {
            // MicroTime.UnmarshalJSON decodes into a plain string first, so Go names no struct field here.
            throw new InvalidDataException(
                $"Lease in version \"v1\" cannot be handled as a Lease: json: cannot unmarshal {GoType(value)} into Go value of type string");
        }

        return MicroTime.TryParse(value.GetString()!, out var time, out var problem)
            ? time
            : throw new InvalidDataException($"Lease in version \"v1\" cannot be handled as a Lease: {problem}");
    }

    private static Dictionary<string, string>? Map(JsonElement? metadata, string name)
    {
        if (Field(metadata, name) is not { } value)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Object)
        {
            throw Mismatch(value, $"ObjectMeta.metadata.{name}", "map[string]string");
        }

        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in value.EnumerateObject())
        {
            map[entry.Name] = entry.Value.ValueKind == JsonValueKind.String
                ? entry.Value.GetString()!
                : throw Mismatch(entry.Value, $"ObjectMeta.metadata.{name}", "string");
        }

        return map;
    }

    private static JsonElement? Field(JsonElement? parent, string name) =>
        parent is { } element && element.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null
            ? value
            : null;

    private static InvalidDataException Mismatch(JsonElement value, string field, string goType) => new(
        $"Lease in version \"v1\" cannot be handled as a Lease: json: cannot unmarshal {GoType(value)} into Go struct field {field} of type {goType}");

    private static string GoType(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "array",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        _ => "bool",
    };
}

/// <summary>Lease validation (<c>ValidateLease</c> and object-meta name rules) with Go's wording.</summary>
internal static class LeaseValidation
{
    private const string SubdomainMessage =
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
        + "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
        + "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

    public static IReadOnlyList<StatusCause> Validate(string name, LeaseSpec spec, bool creating)
    {
        var causes = new List<StatusCause>();
        if (creating && name.Length == 0)
        {
            causes.Add(new StatusCause("FieldValueRequired", "Required value: name or generateName is required", "metadata.name"));
        }
        else if (creating && !IsSubdomain(name))
        {
            causes.Add(new StatusCause("FieldValueInvalid", $"Invalid value: {MicroTime.GoQuote(name)}: {SubdomainMessage}", "metadata.name"));
        }

        if (spec.LeaseDurationSeconds is { } duration and <= 0)
        {
            causes.Add(Invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"));
        }

        if (spec.LeaseTransitions is { } transitions and < 0)
        {
            causes.Add(Invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0"));
        }

        return causes;
    }

    private static StatusCause Invalid(string field, int value, string problem) =>
        new("FieldValueInvalid", string.Create(CultureInfo.InvariantCulture, $"Invalid value: {value}: {problem}"), field);

    private static bool IsSubdomain(string name) =>
        name.Length <= 253
        && name.Split('.').All(label =>
            label.Length > 0
            && IsLowerAlphanumeric(label[0])
            && IsLowerAlphanumeric(label[^1])
            && label.All(c => IsLowerAlphanumeric(c) || c == '-'));

    private static bool IsLowerAlphanumeric(char c) => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c);
}
