using System.Globalization;
using System.IO.Pipelines;
using System.Text;
using Google.Protobuf;
using Telemetry.Core.Readings;
using Telemetry.Core.Vitals;
using Telemetry.Ingest.Codecs;
using Telemetry.Protos;

namespace Telemetry.Ingest.Tests.Codecs;

/// <summary>
/// A bulk upload read from a real pipe in chunks of every awkward size: the same readings come out as when the whole
/// payload is decoded at once, in batches no larger than asked for.
/// </summary>
public sealed class UploadStreamReaderTests
{
    private const int Readings = 250;
    private const int BatchSize = 40;

    public static TheoryData<UploadFormat, int> FormatsAndChunks()
    {
        var cases = new TheoryData<UploadFormat, int>();
        foreach (var format in Enum.GetValues<UploadFormat>())
        {
            foreach (var chunk in new[] { 1, 7, 64, 4096 })
            {
                cases.Add(format, chunk);
            }
        }

        return cases;
    }

    [Theory]
    [MemberData(nameof(FormatsAndChunks))]
    public async Task Every_format_reads_the_same_readings_whatever_the_chunking(UploadFormat format, int chunk)
    {
        var (payload, expected) = Build(format);

        var (status, batches, error) = await ReadAsync(format, payload, chunk);

        Assert.True(status == UploadReadStatus.Completed, error);
        Assert.Equal(expected, batches.SelectMany(b => b));
        Assert.All(batches, b => Assert.InRange(b.Length, 1, format == UploadFormat.DelimitedProtobuf ? BatchSize + 25 : BatchSize));
    }

    [Theory]
    [InlineData(UploadFormat.JsonBatch, 1)]
    [InlineData(UploadFormat.JsonBatch, 2)]
    [InlineData(UploadFormat.SenMl, 7)]
    [InlineData(UploadFormat.NdJson, 1)]
    [InlineData(UploadFormat.NdJson, 4096)]
    public async Task A_byte_order_mark_before_a_text_upload_is_passed_over(UploadFormat format, int chunk)
    {
        var (payload, expected) = Build(format);

        var (status, batches, error) = await ReadAsync(format, [0xEF, 0xBB, 0xBF, .. payload], chunk);

        Assert.True(status == UploadReadStatus.Completed, error);
        Assert.Equal(expected, batches.SelectMany(b => b));
    }

    [Theory]
    [InlineData(UploadFormat.JsonBatch, "{\"readings\":[{\"kind\":\"heart_rate\",\"time\":\"2026-11-24T09:59:00Z\",\"value\":70},{\"kind\":")]
    [InlineData(UploadFormat.SenMl, "[{\"n\":\"heart_rate\",\"v\":70,\"t\":-1},{\"n\":")]
    [InlineData(UploadFormat.JsonBatch, "{\"readings\":[{\"kind\":\"heart_rate\",\"time\":\"2026-11-24T09:59:00Z\",\"value\":70}]}{\"readings\":[]}")]
    [InlineData(UploadFormat.JsonBatch, "{\"seq\":1}")]
    [InlineData(UploadFormat.SenMl, "[{\"n\":\"heart_rate\",\"v\":70,\"t\":-1},{\"n\":\"heart_rate\",\"v\":71,\"t\":-2,\"rate_\":1}]")]
    public async Task A_broken_upload_is_refused_with_a_reason_after_the_readings_before_it(UploadFormat format, string payload)
    {
        var (status, batches, error) = await ReadAsync(format, Encoding.UTF8.GetBytes(payload), chunk: 5);

        Assert.Equal(UploadReadStatus.Malformed, status);
        Assert.False(string.IsNullOrEmpty(error));
        Assert.True(batches.Sum(b => b.Length) <= 1);
    }

    [Theory]
    [InlineData(UploadFormat.JsonBatch, "")]
    [InlineData(UploadFormat.SenMl, " \r\n")]
    [InlineData(UploadFormat.NdJson, "")]
    [InlineData(UploadFormat.NdJson, "\n\n")]
    [InlineData(UploadFormat.DelimitedProtobuf, "")]
    public async Task An_empty_upload_is_refused_as_empty_in_every_format(UploadFormat format, string payload)
    {
        var (status, batches, error) = await ReadAsync(format, Encoding.UTF8.GetBytes(payload), chunk: 1);

        Assert.Equal(UploadReadStatus.Malformed, status);
        Assert.Contains("empty", error, StringComparison.Ordinal);
        Assert.Empty(batches);
    }

    [Fact]
    public async Task An_upload_reads_what_an_mqtt_payload_reads_a_second_readings_array_and_records_as_deep()
    {
        // Both arrays are read, and a record holding an extension three levels deep, as the MQTT decoder reads them.
        var payload = Encoding.UTF8.GetBytes(
            "{\"readings\":[{\"kind\":\"heart_rate\",\"time\":\"2026-11-24T09:59:00Z\",\"value\":70,\"meta\":{\"a\":{\"b\":{\"c\":1}}}}]," +
            "\"seq\":3,\"readings\":[{\"kind\":\"heart_rate\",\"time\":\"2026-11-24T09:59:01Z\",\"value\":71}]}");

        var (status, batches, error) = await ReadAsync(UploadFormat.JsonBatch, payload, chunk: 7);

        Assert.True(status == UploadReadStatus.Completed, error);
        Assert.Equal([70.0, 71.0], batches.SelectMany(b => b).Select(r => r.Value));
    }

    [Theory]
    [InlineData(UploadFormat.JsonBatch, "{\"readings\":[{\"kind\":\"heart_rate\",\"time\":\"2026-11-24T09:59:00Z\",\"value\":70},72,null,[{\"kind\":\"x\"}],{\"kind\":\"heart_rate\",\"time\":\"2026-11-24T09:59:01Z\",\"value\":71}]}")]
    [InlineData(UploadFormat.SenMl, "[{\"n\":\"heart_rate\",\"v\":70,\"t\":-2},72,null,[{\"n\":\"x\"}],{\"n\":\"heart_rate\",\"v\":71,\"t\":-1}]")]
    public async Task An_entry_that_is_not_a_record_is_refused_alone_and_its_neighbours_kept(UploadFormat format, string payload)
    {
        var (status, batches, error) = await ReadAsync(format, Encoding.UTF8.GetBytes(payload), chunk: 3);
        var (_, _, _, rejected) = ReadWhole(format, Encoding.UTF8.GetBytes(payload));

        Assert.True(status == UploadReadStatus.Completed, error);
        Assert.Equal([70.0, 71.0], batches.SelectMany(b => b).Select(r => r.Value));
        Assert.Equal(3, rejected);
    }

    [Fact]
    public void A_senml_pack_that_may_not_be_used_is_refused_as_a_pack()
    {
        var reader = new UploadStreamReader(UploadFormat.SenMl, BatchSize, 64 * 1024);
        var payload = Encoding.UTF8.GetBytes("[{\"n\":\"heart_rate\",\"v\":70,\"t\":-1},{\"n\":\"heart_rate\",\"v\":71,\"t\":-2,\"rate_\":1}]");

        Assert.Equal(UploadReadStatus.Malformed, reader.Read(new System.Buffers.ReadOnlySequence<byte>(payload), isFinalBlock: true, Wearable.NewBuilder(), out _));
        Assert.True(reader.PackRefused);
        var broken = new UploadStreamReader(UploadFormat.SenMl, BatchSize, 64 * 1024);
        Assert.Equal(UploadReadStatus.Malformed, broken.Read(new System.Buffers.ReadOnlySequence<byte>("[{\"n\":"u8.ToArray()), isFinalBlock: true, Wearable.NewBuilder(), out _));
        Assert.False(broken.PackRefused);
    }

    [Fact]
    public void A_broken_ndjson_line_is_refused_alone_and_its_neighbours_kept()
    {
        var payload = Encoding.UTF8.GetBytes(
            "{\"kind\":\"heart_rate\",\"time\":\"2026-11-24T09:59:00Z\",\"value\":70}\n" +
            "[1,2]\n{\"kind\":\"heart_rate\",\"ti\n{\"kind\":\"heart_rate\",\"time\":\"2026-11-24T09:59:01Z\",\"value\":71} trailing\n" +
            "{\"kind\":\"heart_rate\",\"time\":\"2026-11-24T09:59:02Z\",\"value\":72}\n");

        var (status, batches, error, rejected) = ReadWhole(UploadFormat.NdJson, payload);

        Assert.True(status == UploadReadStatus.Completed, error);
        Assert.Equal([70.0, 72.0], batches.SelectMany(b => b).Select(r => r.Value));
        Assert.Equal(3, rejected);
    }

    [Fact]
    public void A_broken_protobuf_message_is_refused_alone_and_its_neighbours_kept()
    {
        var good = new VitalBatch { BaseTimeMs = Wearable.NowMs - 60_000, Series = { new VitalSeries { Kind = "heart_rate", TimeDeltasMs = { 0 }, Values = { 70 } } } };
        var broken = new VitalBatch
        {
            BaseTimeMs = Wearable.NowMs - 30_000,
            Series =
            {
                new VitalSeries { Kind = "heart_rate", TimeDeltasMs = { 0 }, Values = { 90 } },
                new VitalSeries { Kind = "spo2", TimeDeltasMs = { 0, 1 }, Values = { 97 } },
            },
        };
        using var stream = new MemoryStream();
        good.WriteDelimitedTo(stream);
        broken.WriteDelimitedTo(stream);
        stream.Write([3, 0x0A, 0xFF, 0xFF]);
        good.WriteDelimitedTo(stream);

        var (status, batches, error, rejected) = ReadWhole(UploadFormat.DelimitedProtobuf, stream.ToArray());

        Assert.True(status == UploadReadStatus.Completed, error);
        Assert.Equal([70.0, 70.0], batches.SelectMany(b => b).Select(r => r.Value));
        Assert.Equal(2, rejected);

        // Why the first could not be read is told once, for the device's reject log.
        var reader = new UploadStreamReader(UploadFormat.DelimitedProtobuf, BatchSize, 64 * 1024);
        Assert.Equal(UploadReadStatus.Completed, reader.Read(new System.Buffers.ReadOnlySequence<byte>(stream.ToArray()), isFinalBlock: true, Wearable.NewBuilder(), out _));
        Assert.StartsWith("a protobuf message of the upload could not be read: ", reader.TakeRecordError(), StringComparison.Ordinal);
        Assert.Null(reader.TakeRecordError());
    }

    [Theory]
    [InlineData(UploadFormat.SenMl, "[{{\"n\":\"heart_rate\",\"v\":70,\"x\":\"{0}\"}}]")]
    [InlineData(UploadFormat.JsonBatch, "{{\"readings\":[{{\"kind\":\"heart_rate\",\"x\":\"{0}\"}}]}}")]
    [InlineData(UploadFormat.NdJson, "{{\"kind\":\"heart_rate\",\"x\":\"{0}\"}}\n")]
    public async Task A_record_larger_than_the_limit_is_refused(UploadFormat format, string template)
    {
        var payload = Encoding.UTF8.GetBytes(string.Format(CultureInfo.InvariantCulture, template, new string('a', 10_000)));

        var (status, _, error) = await ReadAsync(format, payload, chunk: 512, maxRecordBytes: 1_000);

        Assert.Equal(UploadReadStatus.Malformed, status);
        Assert.Contains("at most 1000 bytes", error);
    }

    private static (UploadReadStatus Status, List<VitalReading[]> Batches, string? Error, int Rejected) ReadWhole(UploadFormat format, byte[] payload)
    {
        var builder = Wearable.NewBuilder();
        var reader = new UploadStreamReader(format, BatchSize, 64 * 1024);
        var status = reader.Read(new System.Buffers.ReadOnlySequence<byte>(payload), isFinalBlock: true, builder, out _);
        return (status, [builder.ToArray()], reader.Error, builder.RejectedCount);
    }

    private static async Task<(UploadReadStatus Status, List<VitalReading[]> Batches, string? Error)> ReadAsync(
        UploadFormat format, byte[] payload, int chunk, int maxRecordBytes = 64 * 1024)
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, minimumSegmentSize: 16));
        var writing = Task.Run(async () =>
        {
            for (var offset = 0; offset < payload.Length; offset += chunk)
            {
                await pipe.Writer.WriteAsync(payload.AsMemory(offset, Math.Min(chunk, payload.Length - offset)));
            }

            await pipe.Writer.CompleteAsync();
        });

        var builder = Wearable.NewBuilder();
        var reader = new UploadStreamReader(format, BatchSize, maxRecordBytes);
        var batches = new List<VitalReading[]>();
        UploadReadStatus status;
        do
        {
            var read = await pipe.Reader.ReadAsync();
            status = reader.Read(read.Buffer, read.IsCompleted, builder, out var consumed);
            pipe.Reader.AdvanceTo(consumed, status == UploadReadStatus.NeedMoreData ? read.Buffer.End : consumed);
            if (status != UploadReadStatus.NeedMoreData && builder.Count > 0)
            {
                batches.Add(builder.ToArray());
                builder.Reset();
            }
        }
        while (status is UploadReadStatus.NeedMoreData or UploadReadStatus.BatchFull);

        await pipe.Reader.CompleteAsync();
        await writing;
        return (status, batches, reader.Error);
    }

    private static (byte[] Payload, VitalReading[] Expected) Build(UploadFormat format)
    {
        var start = Wearable.NowMs - (Readings * 1_000L);
        var expected = Enumerable.Range(0, Readings).Select(i => new VitalReading(VitalKind.HeartRate, start + (i * 1_000L), 60 + (i % 50))).ToArray();
        var text = new StringBuilder();
        switch (format)
        {
            case UploadFormat.SenMl:
                text.Append(CultureInfo.InvariantCulture, $"[{{\"bn\":\"urn:dev:watch-1:\",\"bt\":{start / 1000},\"bu\":\"beat/min\"}}");
                foreach (var (reading, i) in expected.Select((r, i) => (r, i)))
                {
                    text.Append(CultureInfo.InvariantCulture, $",\n  {{\"n\":\"heart_rate\",\"t\":{i},\"v\":{reading.Value}}}");
                }

                return (Encoding.UTF8.GetBytes(text.Append(']').ToString()), expected);
            case UploadFormat.JsonBatch:
                text.Append("{\"seq\":9,\"device\":{\"model\":\"x\",\"tags\":[1,2]},\"readings\":[");
                text.AppendJoin(",", expected.Select(Json));
                return (Encoding.UTF8.GetBytes(text.Append("],\"note\":\"end\"}\n").ToString()), expected);
            case UploadFormat.NdJson:
                foreach (var reading in expected)
                {
                    text.Append(Json(reading)).Append(reading.Value > 100 ? "\r\n" : "\n");
                }

                return (Encoding.UTF8.GetBytes(text.Append("\n\n").ToString()), expected);
            default:
                using (var stream = new MemoryStream())
                {
                    foreach (var part in expected.Chunk(25))
                    {
                        var series = new VitalSeries { Kind = "heart_rate" };
                        series.TimeDeltasMs.Add(part.Select((r, i) => i == 0 ? 0 : 1_000L));
                        series.Values.Add(part.Select(r => r.Value));
                        new VitalBatch { BaseTimeMs = part[0].TimestampMs, Series = { series } }.WriteDelimitedTo(stream);
                    }

                    return (stream.ToArray(), expected);
                }
        }
    }

    private static string Json(VitalReading reading) =>
        string.Create(CultureInfo.InvariantCulture, $"{{\"kind\":\"heart_rate\",\"time\":\"{DateTimeOffset.FromUnixTimeMilliseconds(reading.TimestampMs):O}\",\"value\":{reading.Value}}}");
}
