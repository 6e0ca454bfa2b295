using System.Buffers;
using System.Text.Encodings.Web;
using System.Text.Json;
using LeaderSidecar.Testing.LeaseApi.Storage;

namespace LeaderSidecar.Testing.LeaseApi.Http;

/// <summary>
/// Writes answers field by field in the order Go's encoder emits them (struct order, <c>omitempty</c>), so
/// the wire text matches the captures, not just the values.
/// </summary>
internal static class ApiJson
{
    public const string LeaseApiVersion = "coordination.k8s.io/v1";

    public static byte[] Status(ApiStatus status, bool indented = false) =>
        Write(indented, writer => WriteStatus(writer, status));

    public static byte[] Lease(Lease lease, bool indented = false) =>
        Write(indented, writer => WriteLease(writer, lease, withTypeMeta: true));

    public static byte[] LeaseList(IReadOnlyList<Lease> items, long revision, bool indented = false) =>
        Write(indented, writer =>
        {
            writer.WriteStartObject();
            writer.WriteString("kind", "LeaseList");
            writer.WriteString("apiVersion", LeaseApiVersion);
            writer.WriteStartObject("metadata");
            writer.WriteString("resourceVersion", revision.ToString(System.Globalization.CultureInfo.InvariantCulture));
            writer.WriteEndObject();
            writer.WriteStartArray("items");
            foreach (var lease in items)
            {
                WriteLease(writer, lease, withTypeMeta: false);
            }

            writer.WriteEndArray();
            writer.WriteEndObject();
        });

    /// <summary>One watch line: <c>{"type":"MODIFIED","object":{...}}</c>, without the newline.</summary>
    public static byte[] WatchEvent(WatchEvent change) =>
        Write(indented: false, writer =>
        {
            writer.WriteStartObject();
            writer.WriteString("type", change.Type switch
            {
                WatchEventType.Added => "ADDED",
                WatchEventType.Modified => "MODIFIED",
                _ => "DELETED",
            });
            writer.WritePropertyName("object");
            WriteLease(writer, change.Lease, withTypeMeta: true);
            writer.WriteEndObject();
        });

    public static byte[] WatchError(ApiStatus status) =>
        Write(indented: false, writer =>
        {
            writer.WriteStartObject();
            writer.WriteString("type", "ERROR");
            writer.WritePropertyName("object");
            WriteStatus(writer, status);
            writer.WriteEndObject();
        });

    /// <summary>A BOOKMARK carries an empty Lease with only a resourceVersion (and Go's null time).</summary>
    public static byte[] WatchBookmark(long revision) =>
        Write(indented: false, writer =>
        {
            writer.WriteStartObject();
            writer.WriteString("type", "BOOKMARK");
            writer.WriteStartObject("object");
            writer.WriteString("kind", "Lease");
            writer.WriteString("apiVersion", LeaseApiVersion);
            writer.WriteStartObject("metadata");
            writer.WriteString("resourceVersion", revision.ToString(System.Globalization.CultureInfo.InvariantCulture));
            writer.WriteNull("creationTimestamp");
            writer.WriteEndObject();
            writer.WriteStartObject("spec");
            writer.WriteEndObject();
            writer.WriteEndObject();
            writer.WriteEndObject();
        });

    // Quotes inside messages come out as \" like Go's, not as \u0022.
    private static readonly JavaScriptEncoder GoLikeEscaping = JavaScriptEncoder.UnsafeRelaxedJsonEscaping;

    private static byte[] Write(bool indented, Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = indented, Encoder = GoLikeEscaping }))
        {
            write(writer);
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteStatus(Utf8JsonWriter writer, ApiStatus status)
    {
        writer.WriteStartObject();
        writer.WriteString("kind", "Status");
        writer.WriteString("apiVersion", "v1");
        writer.WriteStartObject("metadata");
        writer.WriteEndObject();
        writer.WriteString("status", status.Status);
        WriteIfPresent(writer, "message", status.Message);
        WriteIfPresent(writer, "reason", status.Reason);
        if (status.Details is { } details)
        {
            writer.WriteStartObject("details");
            WriteIfPresent(writer, "name", details.Name);
            WriteIfPresent(writer, "group", details.Group);
            WriteIfPresent(writer, "kind", details.Kind);
            WriteIfPresent(writer, "uid", details.Uid);
            if (details.Causes is { Count: > 0 } causes)
            {
                writer.WriteStartArray("causes");
                foreach (var cause in causes)
                {
                    writer.WriteStartObject();
                    WriteIfPresent(writer, "reason", cause.Reason);
                    WriteIfPresent(writer, "message", cause.Message);
                    WriteIfPresent(writer, "field", cause.Field);
                    writer.WriteEndObject();
                }

                writer.WriteEndArray();
            }

            if (details.RetryAfterSeconds is { } retryAfter and not 0)
            {
                writer.WriteNumber("retryAfterSeconds", retryAfter);
            }

            writer.WriteEndObject();
        }

        if (status.Code != 0)
        {
            writer.WriteNumber("code", status.Code);
        }

        writer.WriteEndObject();
    }

    private static void WriteLease(Utf8JsonWriter writer, Lease lease, bool withTypeMeta)
    {
        writer.WriteStartObject();
        if (withTypeMeta)
        {
            writer.WriteString("kind", "Lease");
            writer.WriteString("apiVersion", LeaseApiVersion);
        }

        var metadata = lease.Metadata;
        writer.WriteStartObject("metadata");
        writer.WriteString("name", metadata.Name);
        writer.WriteString("namespace", metadata.Namespace);
        writer.WriteString("uid", metadata.Uid);
        writer.WriteString("resourceVersion", metadata.ResourceVersion);
        writer.WriteString("creationTimestamp", MicroTime.FormatSeconds(metadata.CreationTimestamp));
        WriteMap(writer, "labels", metadata.Labels);
        WriteMap(writer, "annotations", metadata.Annotations);
        if (metadata.ManagedFields.Count > 0)
        {
            writer.WriteStartArray("managedFields");
            foreach (var entry in metadata.ManagedFields)
            {
                writer.WriteStartObject();
                WriteIfPresent(writer, "manager", entry.Manager);
                writer.WriteString("operation", "Update");
                writer.WriteString("apiVersion", LeaseApiVersion);
                writer.WriteString("time", MicroTime.FormatSeconds(entry.Time));
                writer.WriteString("fieldsType", "FieldsV1");
                writer.WriteStartObject("fieldsV1");
                writer.WriteStartObject("f:spec");
                foreach (var field in entry.SpecFields.Order(StringComparer.Ordinal))
                {
                    writer.WriteStartObject("f:" + field);
                    writer.WriteEndObject();
                }

                writer.WriteEndObject();
                writer.WriteEndObject();
                writer.WriteEndObject();
            }

            writer.WriteEndArray();
        }

        writer.WriteEndObject();

        var spec = lease.Spec;
        writer.WriteStartObject("spec");
        if (spec.HolderIdentity is { } holder)
        {
            writer.WriteString("holderIdentity", holder);
        }

        if (spec.LeaseDurationSeconds is { } duration)
        {
            writer.WriteNumber("leaseDurationSeconds", duration);
        }

        if (spec.AcquireTime is { } acquired)
        {
            writer.WriteString("acquireTime", MicroTime.Format(acquired));
        }

        if (spec.RenewTime is { } renewed)
        {
            writer.WriteString("renewTime", MicroTime.Format(renewed));
        }

        if (spec.LeaseTransitions is { } transitions)
        {
            writer.WriteNumber("leaseTransitions", transitions);
        }

        writer.WriteEndObject();
        writer.WriteEndObject();
    }

    private static void WriteIfPresent(Utf8JsonWriter writer, string name, string? value)
    {
        if (!string.IsNullOrEmpty(value))
        {
            writer.WriteString(name, value);
        }
    }

    private static void WriteMap(Utf8JsonWriter writer, string name, IReadOnlyDictionary<string, string>? map)
    {
        if (map is not { Count: > 0 })
        {
            return;
        }

        writer.WriteStartObject(name);
        foreach (var (key, value) in map.OrderBy(pair => pair.Key, StringComparer.Ordinal))
        {
            writer.WriteString(key, value);
        }

        writer.WriteEndObject();
    }
}
