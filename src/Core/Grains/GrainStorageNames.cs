namespace Telemetry.Core.Grains;

/// <summary>Names of the grain storage providers grains persist their state in.</summary>
public static class GrainStorageNames
{
    /// <summary>Durable state: device bindings, alert rules and alert state.</summary>
    public const string Durable = "telemetry";
}
