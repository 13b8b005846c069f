namespace Telemetry.Grains.Tests;

/// <summary>The system clock, moved on by <see cref="Offset"/>: a test can let days pass.</summary>
public sealed class ShiftableClock : TimeProvider
{
    public TimeSpan Offset { get; set; }

    public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + Offset;
}
