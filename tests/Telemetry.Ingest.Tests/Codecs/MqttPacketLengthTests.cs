using System.Buffers;
using Telemetry.Ingest.Mqtt;

namespace Telemetry.Ingest.Tests.Codecs;

public sealed class MqttPacketLengthTests
{
    [Theory]
    [InlineData(new byte[] { 0x30, 0x00 }, 2)]
    [InlineData(new byte[] { 0x32, 0x7F }, 129)]
    [InlineData(new byte[] { 0x32, 0x80, 0x01 }, 131)]
    [InlineData(new byte[] { 0x32, 0xFF, 0xFF, 0xFF, 0x7F }, 268_435_460)]
    public void The_packet_length_comes_from_the_fixed_header(byte[] header, long length)
    {
        Assert.True(MqttPacketSizeGuard.TryReadPacketLength(new ReadOnlySequence<byte>(header), out var packetLength));
        Assert.Equal(length, packetLength);
    }

    [Theory]
    [InlineData(new byte[] { })]
    [InlineData(new byte[] { 0x30 })]
    [InlineData(new byte[] { 0x30, 0x80 })]
    public void An_incomplete_header_waits_for_more_bytes(byte[] header)
    {
        Assert.False(MqttPacketSizeGuard.TryReadPacketLength(new ReadOnlySequence<byte>(header), out _));
    }

    [Fact]
    public void A_fifth_length_byte_reads_as_too_large()
    {
        Assert.True(MqttPacketSizeGuard.TryReadPacketLength(new ReadOnlySequence<byte>([0x30, 0x80, 0x80, 0x80, 0x80, 0x01]), out var packetLength));
        Assert.Equal(long.MaxValue, packetLength);
    }
}
