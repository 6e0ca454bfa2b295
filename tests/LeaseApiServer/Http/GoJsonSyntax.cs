using System.Globalization;

namespace LeaderSidecar.Testing.LeaseApi.Http;

/// <summary>
/// Checks JSON syntax the way Go's <c>encoding/json</c> scanner does and words the first error as it does
/// (<c>invalid character 'n' looking for beginning of object key string</c>), because kube-apiserver puts
/// that text into its 400 answer to a malformed body.
/// </summary>
internal static class GoJsonSyntax
{
    /// <returns>null when the text is one valid JSON value, else Go's error message.</returns>
    public static string? Validate(ReadOnlySpan<byte> json)
    {
        var scanner = new Scanner(json);
        try
        {
            scanner.Value();
            scanner.SkipSpace();
            if (!scanner.AtEnd)
            {
                throw scanner.Invalid("after top-level value");
            }

            return null;
        }
        catch (InvalidDataException error)
        {
            return error.Message;
        }
    }

    private ref struct Scanner(ReadOnlySpan<byte> json)
    {
        private readonly ReadOnlySpan<byte> _json = json;
        private int _position;

        public readonly bool AtEnd => _position >= _json.Length;

        private readonly byte Current => AtEnd ? throw new InvalidDataException("unexpected end of JSON input") : _json[_position];

        public void SkipSpace()
        {
            while (!AtEnd && _json[_position] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')
            {
                _position++;
            }
        }

        public void Value()
        {
            SkipSpace();
            switch (Current)
            {
                case (byte)'{':
                    Object();
                    break;
                case (byte)'[':
                    Array();
                    break;
                case (byte)'"':
                    String();
                    break;
                case (byte)'-' or (>= (byte)'0' and <= (byte)'9'):
                    Number();
                    break;
                case (byte)'t':
                    Literal("true");
                    break;
                case (byte)'f':
                    Literal("false");
                    break;
                case (byte)'n':
                    Literal("null");
                    break;
                default:
                    throw Invalid("looking for beginning of value");
            }
        }

        public readonly InvalidDataException Invalid(string context) =>
            new($"invalid character {Quote(_json[_position])} {context}");

        private void Object()
        {
            _position++;
            SkipSpace();
            if (Current == '}')
            {
                _position++;
                return;
            }

            while (true)
            {
                SkipSpace();
                if (Current != '"')
                {
                    throw Invalid("looking for beginning of object key string");
                }

                String();
                SkipSpace();
                if (Current != ':')
                {
                    throw Invalid("after object key");
                }

                _position++;
                Value();
                SkipSpace();
                switch (Current)
                {
                    case (byte)',':
                        _position++;
                        continue;
                    case (byte)'}':
                        _position++;
                        return;
                    default:
                        throw Invalid("after object key:value pair");
                }
            }
        }

        private void Array()
        {
            _position++;
            SkipSpace();
            if (Current == ']')
            {
                _position++;
                return;
            }

            while (true)
            {
                Value();
                SkipSpace();
                switch (Current)
                {
                    case (byte)',':
                        _position++;
                        continue;
                    case (byte)']':
                        _position++;
                        return;
                    default:
                        throw Invalid("after array element");
                }
            }
        }

        private void String()
        {
            _position++;
            while (true)
            {
                var c = Current;
                if (c == '"')
                {
                    _position++;
                    return;
                }

                if (c < 0x20)
                {
                    throw Invalid("in string literal");
                }

                _position++;
                if (c != '\\')
                {
                    continue;
                }

                if (Current is not ((byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n'
                    or (byte)'r' or (byte)'t' or (byte)'u'))
                {
                    throw Invalid("in string escape code");
                }

                if (Current == 'u')
                {
                    _position++;
                    for (var i = 0; i < 4; i++, _position++)
                    {
                        if (!char.IsAsciiHexDigit((char)Current))
                        {
                            throw Invalid("in \\u hexadecimal character escape");
                        }
                    }
                }
                else
                {
                    _position++;
                }
            }
        }

        private void Number()
        {
            if (Current == '-')
            {
                _position++;
                if (!IsDigit(Current))
                {
                    throw Invalid("in numeric literal");
                }
            }

            if (Current == '0')
            {
                _position++;
            }
            else
            {
                SkipDigits();
            }

            if (!AtEnd && _json[_position] == '.')
            {
                _position++;
                if (!IsDigit(Current))
                {
                    throw Invalid("after decimal point in numeric literal");
                }

                SkipDigits();
            }

            if (!AtEnd && _json[_position] is (byte)'e' or (byte)'E')
            {
                _position++;
                if (Current is (byte)'+' or (byte)'-')
                {
                    _position++;
                }

                if (!IsDigit(Current))
                {
                    throw Invalid("in exponent of numeric literal");
                }

                SkipDigits();
            }
        }

        private void SkipDigits()
        {
            while (!AtEnd && IsDigit(_json[_position]))
            {
                _position++;
            }
        }

        private void Literal(string word)
        {
            foreach (var expected in word)
            {
                if (Current != expected)
                {
                    throw Invalid($"in literal {word} (expecting {Quote((byte)expected)})");
                }

                _position++;
            }
        }

        private static bool IsDigit(byte c) => c is >= (byte)'0' and <= (byte)'9';

        // Go's quoteChar: 'x', '\'' and '"' as such, control characters escaped.
        private static string Quote(byte c) => c switch
        {
            (byte)'\'' => @"'\''",
            (byte)'"' => "'\"'",
            (byte)'\n' => @"'\n'",
            (byte)'\r' => @"'\r'",
            (byte)'\t' => @"'\t'",
            < 0x20 or 0x7f => string.Create(CultureInfo.InvariantCulture, $"'\\x{c:x2}'"),
            _ => $"'{(char)c}'",
        };
    }
}
