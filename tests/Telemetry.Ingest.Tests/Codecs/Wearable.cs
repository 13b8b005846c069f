using System.Buffers;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using Telemetry.Ingest.Codecs;

namespace Telemetry.Ingest.Tests.Codecs;

/// <summary>A fixed clock, a builder on it, and payloads as a wearable would send them.</summary>
internal static class Wearable
{
    public static readonly DateTimeOffset Now = new(2026, 11, 24, 10, 0, 0, TimeSpan.Zero);

    public static long NowMs => Now.ToUnixTimeMilliseconds();

    public static ReadingBatchBuilder NewBuilder() => NewBuilder(out _);

    public static ReadingBatchBuilder NewBuilder(out FakeTimeProvider clock)
    {
        clock = new FakeTimeProvider(Now);
        return new ReadingBatchBuilder(ValidationLimits.Default, clock);
    }

    /// <summary>An ISO 8601 time <paramref name="offset"/> from <see cref="Now"/>.</summary>
    public static string Time(TimeSpan offset) => (Now + offset).ToString("O", System.Globalization.CultureInfo.InvariantCulture);

    public static ReadOnlySequence<byte> Utf8(string payload) => new(Encoding.UTF8.GetBytes(payload));

    /// <summary>Decodes through the format detection a device payload goes through.</summary>
    public static bool Decode(ReadingBatchBuilder builder, string payload, out PayloadFormat format, out string? error) =>
        PayloadDecoder.TryDecode(Utf8(payload), builder, out format, out error);
}
