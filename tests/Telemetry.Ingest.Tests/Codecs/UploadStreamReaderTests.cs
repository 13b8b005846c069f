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
        // A protobuf message or series is taken whole: a batch may end up to one series past its size.
        Assert.All(batches, b => Assert.InRange(b.Length, 1, format is UploadFormat.DelimitedProtobuf or UploadFormat.Protobuf or UploadFormat.Payload ? BatchSize + 25 : BatchSize));
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

    [Theory]
    [InlineData(UploadFormat.SenMl, 3)]
    [InlineData(UploadFormat.JsonBatch, 64)]
    [InlineData(UploadFormat.Protobuf, 1)]
    [InlineData(UploadFormat.Protobuf, 4096)]
    public async Task An_upload_sent_as_a_payload_is_read_as_its_first_byte_names(UploadFormat named, int chunk)
    {
        var (payload, expected) = Build(named);
        if (named != UploadFormat.Protobuf)
        {
            // Before JSON, a byte order mark and white space are passed over, as in an MQTT payload.
            payload = [0xEF, 0xBB, 0xBF, .. " \r\n"u8, .. payload];
        }

        var reader = new UploadStreamReader(UploadFormat.Payload, BatchSize, 64 * 1024);
        var (status, batches, error) = await ReadAsync(reader, payload, chunk);

        Assert.True(status == UploadReadStatus.Completed, error);
        Assert.Equal(named, reader.Format);
        Assert.Equal(expected, batches.SelectMany(b => b));
    }

    [Fact]
    public void A_protobuf_batch_passes_over_fields_it_does_not_know_and_refuses_a_broken_series_alone()
    {
        var start = Wearable.NowMs - 60_000;
        using var stream = new MemoryStream();
        var output = new CodedOutputStream(stream);
        output.WriteTag(1, WireFormat.WireType.Varint);
        output.WriteUInt64(7);
        output.WriteTag(2, WireFormat.WireType.Varint);
        output.WriteInt64(start);
        output.WriteTag(3, WireFormat.WireType.LengthDelimited);
        output.WriteMessage(new VitalSeries { Kind = "heart_rate", TimeDeltasMs = { 0 }, Values = { 70 } });
        output.WriteTag(9, WireFormat.WireType.Varint);
        output.WriteUInt64(300);
        output.WriteTag(10, WireFormat.WireType.Fixed64);
        output.WriteFixed64(1);
        output.WriteTag(11, WireFormat.WireType.Fixed32);
        output.WriteFixed32(1);
        output.WriteTag(12, WireFormat.WireType.LengthDelimited);
        output.WriteString("a field of a later version");
        output.WriteTag(3, WireFormat.WireType.LengthDelimited);
        output.WriteMessage(new VitalSeries { Kind = "spo2", TimeDeltasMs = { 1_000, 1_000 }, Values = { 97 } });
        output.WriteTag(3, WireFormat.WireType.LengthDelimited);
        output.WriteMessage(new VitalSeries { Kind = "spo2", TimeDeltasMs = { 2_000 }, Values = { 96 } });
        output.Flush();

        var builder = Wearable.NewBuilder();
        var reader = new UploadStreamReader(UploadFormat.Payload, BatchSize, 64 * 1024);
        var status = reader.Read(new System.Buffers.ReadOnlySequence<byte>(stream.ToArray()), isFinalBlock: true, builder, out _);

        Assert.True(status == UploadReadStatus.Completed, reader.Error);
        Assert.Equal([(VitalKind.HeartRate, start, 70.0), (VitalKind.OxygenSaturation, start + 2_000, 96.0)], builder.ToArray().Select(r => (r.Kind, r.TimestampMs, r.Value)));
        Assert.Equal(1, builder.RejectedCount);
        Assert.StartsWith("a series of the upload could not be read: ", reader.TakeRecordError(), StringComparison.Ordinal);
    }

    [Fact]
    public void A_series_of_exactly_the_largest_size_is_read_however_its_bytes_arrive()
    {
        var series = new VitalSeries { Kind = "heart_rate" };
        series.TimeDeltasMs.Add(Enumerable.Range(0, 400).Select(i => i == 0 ? 0L : 1_000L));
        series.Values.Add(Enumerable.Range(0, 400).Select(i => 60.0 + (i % 40)));
        var payload = new VitalBatch { BaseTimeMs = Wearable.NowMs - 600_000, Series = { series } }.ToByteArray();

        // The limit is the series' own size; its tag and length come before it while it is read in, a byte at a time.
        var reader = new UploadStreamReader(UploadFormat.Protobuf, BatchSize, maxRecordBytes: series.CalculateSize());
        var builder = Wearable.NewBuilder();
        var buffered = Array.Empty<byte>();
        var status = UploadReadStatus.NeedMoreData;
        for (var offset = 0; offset < payload.Length && status is UploadReadStatus.NeedMoreData or UploadReadStatus.BatchFull; offset++)
        {
            buffered = [.. buffered, payload[offset]];
            var sequence = new System.Buffers.ReadOnlySequence<byte>(buffered);
            status = reader.Read(sequence, offset == payload.Length - 1, builder, out var consumed);
            buffered = System.Buffers.BuffersExtensions.ToArray(sequence.Slice(consumed));
        }

        Assert.True(status is UploadReadStatus.Completed or UploadReadStatus.BatchFull, reader.Error);
        Assert.Equal(400, builder.Count);
    }

    [Theory]
    [InlineData(true, "base_time_ms comes after a series")]
    [InlineData(false, "wire type 3")]
    public void A_protobuf_batch_that_cannot_be_streamed_is_refused_after_what_came_before(bool lateBaseTime, string reason)
    {
        using var stream = new MemoryStream();
        var output = new CodedOutputStream(stream);
        output.WriteTag(2, WireFormat.WireType.Varint);
        output.WriteInt64(Wearable.NowMs - 60_000);
        output.WriteTag(3, WireFormat.WireType.LengthDelimited);
        output.WriteMessage(new VitalSeries { Kind = "heart_rate", TimeDeltasMs = { 0 }, Values = { 70 } });
        if (lateBaseTime)
        {
            // Its series already taken with the first base time, which this one would move.
            output.WriteTag(2, WireFormat.WireType.Varint);
            output.WriteInt64(Wearable.NowMs - 30_000);
        }
        else
        {
            output.WriteTag(9, WireFormat.WireType.StartGroup);
            output.WriteTag(9, WireFormat.WireType.EndGroup);
        }

        output.Flush();

        var builder = Wearable.NewBuilder();
        var reader = new UploadStreamReader(UploadFormat.Protobuf, BatchSize, 64 * 1024);
        var status = reader.Read(new System.Buffers.ReadOnlySequence<byte>(stream.ToArray()), isFinalBlock: true, builder, out _);

        Assert.Equal(UploadReadStatus.Malformed, status);
        Assert.Contains(reason, reader.Error, StringComparison.Ordinal);
        Assert.Equal([70.0], builder.ToArray().Select(r => r.Value));
    }

    [Fact]
    public void Readings_kept_apart_as_implausible_fill_a_batch_too_so_none_is_dropped()
    {
        // A faulty sensor's day: every reading out of range, each to be kept apart, none beyond what a batch holds.
        var start = Wearable.NowMs - 3_600_000;
        var payload = Encoding.UTF8.GetBytes(string.Concat(Enumerable.Range(0, 100).Select(i =>
            Json(new VitalReading(VitalKind.HeartRate, start + (i * 1_000L), 900)) + "\n")));
        var builder = Wearable.NewBuilder();
        var reader = new UploadStreamReader(UploadFormat.NdJson, BatchSize, 64 * 1024);
        var buffer = new System.Buffers.ReadOnlySequence<byte>(payload);
        var kept = new List<int>();
        UploadReadStatus status;
        do
        {
            status = reader.Read(buffer, isFinalBlock: true, builder, out var consumed);
            buffer = buffer.Slice(consumed);
            kept.Add(builder.Quarantined.Count);
            builder.Reset();
        }
        while (status == UploadReadStatus.BatchFull);

        Assert.Equal(UploadReadStatus.Completed, status);
        Assert.Equal([BatchSize, BatchSize, 20], kept);
    }

    private static (UploadReadStatus Status, List<VitalReading[]> Batches, string? Error, int Rejected) ReadWhole(UploadFormat format, byte[] payload)
    {
        var builder = Wearable.NewBuilder();
        var reader = new UploadStreamReader(format, BatchSize, 64 * 1024);
        var status = reader.Read(new System.Buffers.ReadOnlySequence<byte>(payload), isFinalBlock: true, builder, out _);
        return (status, [builder.ToArray()], reader.Error, builder.RejectedCount);
    }

    private static Task<(UploadReadStatus Status, List<VitalReading[]> Batches, string? Error)> ReadAsync(
        UploadFormat format, byte[] payload, int chunk, int maxRecordBytes = 64 * 1024) =>
        ReadAsync(new UploadStreamReader(format, BatchSize, maxRecordBytes), payload, chunk);

    private static async Task<(UploadReadStatus Status, List<VitalReading[]> Batches, string? Error)> ReadAsync(
        UploadStreamReader reader, byte[] payload, int chunk)
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
            case UploadFormat.Protobuf or UploadFormat.Payload:
                var batch = new VitalBatch { BaseTimeMs = start };
                foreach (var part in expected.Chunk(25))
                {
                    var series = new VitalSeries { Kind = "heart_rate" };
                    series.TimeDeltasMs.Add(part.Select((r, i) => i == 0 ? r.TimestampMs - start : 1_000L));
                    series.Values.Add(part.Select(r => r.Value));
                    batch.Series.Add(series);
                }

                return (batch.ToByteArray(), expected);
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
