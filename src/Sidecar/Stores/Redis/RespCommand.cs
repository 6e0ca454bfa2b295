using System.Buffers;
using System.Globalization;
using System.Text;

namespace LeaderSidecar.Stores.Redis;

/// <summary>A command as RESP sends it: an array of bulk strings (UTF-8).</summary>
internal static class RespCommand
{
    private static readonly byte[] Crlf = "\r\n"u8.ToArray();

    public static byte[] Encode(IReadOnlyList<string> arguments)
    {
        var buffer = new ArrayBufferWriter<byte>(64 + arguments.Sum(a => a.Length * 3 + 16));
        Header(buffer, '*', arguments.Count);
        foreach (var argument in arguments)
        {
            var length = Encoding.UTF8.GetByteCount(argument);
            Header(buffer, '$', length);
            Encoding.UTF8.GetBytes(argument, buffer.GetSpan(length));
            buffer.Advance(length);
            buffer.Write(Crlf);
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static void Header(ArrayBufferWriter<byte> buffer, char type, int count)
    {
        var text = string.Create(CultureInfo.InvariantCulture, $"{type}{count}\r\n");
        var span = buffer.GetSpan(text.Length);
        var written = Encoding.ASCII.GetBytes(text, span);
        buffer.Advance(written);
    }
}
