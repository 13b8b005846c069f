using System.Buffers;
using System.Text;
using CsCheck;
using Google.Protobuf;
using Telemetry.Ingest.Codecs;
using Telemetry.Protos;

namespace Telemetry.Ingest.Tests.Codecs;

/// <summary>
/// Random and mutated payloads into every decoder, 100,000 per run and format: no exception escapes, and every input
/// is either decoded or refused with a reason. CsCheck prints the seed of a failing input so it can be replayed.
/// </summary>
public sealed class DecoderFuzzTests
{
    private const long Inputs = 100_000;

    private static readonly byte[] SenMl = Encoding.UTF8.GetBytes(
        """[{"bn":"urn:dev:watch-1:","bt":1795566587,"bu":"beat/min","n":"heart_rate","v":72},{"n":"spo2","u":"%","v":97,"t":1},{"n":"8310-5","u":"[degF]","v":98.6,"t":2},{"n":"steps","vs":"x","t":3}]""");

    private static readonly byte[] Json = Encoding.UTF8.GetBytes(
        """{"seq":42,"readings":[{"kind":"heart_rate","time":"2026-11-24T09:59:00Z","value":72,"unit":"/min"},{"kind":"glucose","time":"2026-11-24T09:58:00Z","value":5.5,"unit":"mmol/L"},{"kind":"spo2","time":"2026-11-24T09:57:00Z","value":0.97,"unit":"1"}]}""");

    private static readonly byte[] Protobuf = new VitalBatch
    {
        Seq = 7,
        BaseTimeMs = Wearable.NowMs - 60_000,
        Series =
        {
            new VitalSeries { Kind = "heart_rate", Unit = "/min", TimeDeltasMs = { 0, 1_000, 1_000 }, Values = { 70, 71, 72 } },
            new VitalSeries { Kind = "59408-5", TimeDeltasMs = { 500 }, Values = { 98 } },
        },
    }.ToByteArray();

    /// <summary>A valid payload with up to eight bytes flipped, inserted or deleted.</summary>
    private static Gen<byte[]> Mutated(byte[] valid) =>
        Gen.Select(Gen.Int[0, 2], Gen.Int[0, valid.Length - 1], Gen.Byte).Array[1, 8].Select(mutations =>
        {
            var bytes = new List<byte>(valid);
            foreach (var (kind, at, value) in mutations)
            {
                var index = Math.Min(at, bytes.Count - 1);
                switch (kind)
                {
                    case 0 when bytes.Count > 0:
                        bytes[index] = value;
                        break;
                    case 1:
                        bytes.Insert(index, value);
                        break;
                    case 2 when bytes.Count > 1:
                        bytes.RemoveAt(index);
                        break;
                }
            }

            return bytes.ToArray();
        });

    public static TheoryData<string> Formats() => ["senml", "json", "protobuf", "random"];

    [Theory]
    [MemberData(nameof(Formats))]
    public void Every_payload_is_decoded_or_refused_with_a_reason(string format)
    {
        var gen = format switch
        {
            "senml" => Mutated(SenMl),
            "json" => Mutated(Json),
            "protobuf" => Mutated(Protobuf),
            _ => Gen.Byte.Array[0, 300],
        };

        gen.Sample(payload =>
        {
            var builder = Wearable.NewBuilder();
            var decoded = PayloadDecoder.TryDecode(new ReadOnlySequence<byte>(payload), builder, out _, out var error);
            return decoded ? error is null && builder.Count + builder.RejectedCount >= 0 : !string.IsNullOrEmpty(error) && builder.Count == 0;
        }, iter: Inputs, threads: 1);
    }

    [Theory]
    [InlineData(UploadFormat.SenMl)]
    [InlineData(UploadFormat.JsonBatch)]
    [InlineData(UploadFormat.NdJson)]
    [InlineData(UploadFormat.DelimitedProtobuf)]
    [InlineData(UploadFormat.Protobuf)]
    [InlineData(UploadFormat.Payload)]
    public void Every_upload_read_in_random_pieces_completes_or_is_refused_with_a_reason(UploadFormat format)
    {
        var valid = format switch
        {
            UploadFormat.SenMl => SenMl,
            UploadFormat.JsonBatch => Json,
            UploadFormat.NdJson => Encoding.UTF8.GetBytes("""{"kind":"heart_rate","time":"2026-11-24T09:59:00Z","value":72}""" + "\n" + """{"kind":"spo2","time":"2026-11-24T09:59:01Z","value":97}""" + "\n"),
            UploadFormat.DelimitedProtobuf => [.. Delimited(Protobuf), .. Delimited(Protobuf)],
            _ => Protobuf,
        };

        Gen.Select(Mutated(valid), Gen.Int[1, 64]).Sample((payload, piece) =>
        {
            var builder = Wearable.NewBuilder();
            var reader = new UploadStreamReader(format, readingsPerBatch: 2, maxRecordBytes: 4_096);
            var offset = 0;
            var buffered = Array.Empty<byte>();
            while (true)
            {
                var take = Math.Min(piece, payload.Length - offset);
                buffered = [.. buffered, .. payload.AsSpan(offset, take)];
                offset += take;
                var final = offset == payload.Length;
                var sequence = new ReadOnlySequence<byte>(buffered);
                var status = reader.Read(sequence, final, builder, out var consumed);
                buffered = sequence.Slice(consumed).ToArray();
                builder.Reset();
                switch (status)
                {
                    case UploadReadStatus.Completed:
                        return final;
                    case UploadReadStatus.Malformed:
                        return !string.IsNullOrEmpty(reader.Error);
                    case UploadReadStatus.NeedMoreData when final:
                        return false;
                }
            }
        }, iter: Inputs / 4, threads: 1);
    }

    private static byte[] Delimited(byte[] message)
    {
        using var stream = new MemoryStream();
        var output = new CodedOutputStream(stream);
        output.WriteBytes(ByteString.CopyFrom(message));
        output.Flush();
        return stream.ToArray();
    }
}
