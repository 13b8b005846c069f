namespace Telemetry.Core.Devices;

/// <summary>
/// A device token's secret as a grain call carries it. Written out as <c>***</c>: Orleans writes a call with its
/// arguments into its own messages (a call that timed out, a server that is gone), and those reach the logs.
/// </summary>
[GenerateSerializer, Immutable]
[Alias("telemetry.device-secret")]
public readonly record struct DeviceSecret([property: Id(0)] string Value)
{
    public override string ToString() => "***";
}
