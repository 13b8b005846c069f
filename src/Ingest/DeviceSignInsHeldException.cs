namespace Telemetry.Ingest;

/// <summary>
/// The client's address had too many device tokens refused (see <see cref="IngestOptions.FailedDeviceSignInsPerMinute"/>):
/// its sign-ins are held for <see cref="RetryAfter"/>, the token not looked at.
/// </summary>
public sealed class DeviceSignInsHeldException(TimeSpan retryAfter)
    : Exception($"Too many refused device tokens from this address; try again in {Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds))} s.")
{
    public TimeSpan RetryAfter { get; } = retryAfter;

    /// <summary>Whole seconds to wait, at least one.</summary>
    public int RetryAfterSeconds => Math.Max(1, (int)Math.Ceiling(RetryAfter.TotalSeconds));
}
