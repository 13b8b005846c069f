namespace Telemetry.Core.Alerts;

/// <summary>Which side of its level a rule's condition lies on.</summary>
public enum AlertDirection : byte
{
    /// <summary>At or above the level (a threshold, or an early-warning score).</summary>
    Above = 1,

    /// <summary>At or below the level.</summary>
    Below = 2,

    /// <summary>Rising at least as fast as the level, per minute.</summary>
    Rising = 3,

    /// <summary>Falling at least as fast as the level, per minute.</summary>
    Falling = 4,
}
