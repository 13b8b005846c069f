namespace Telemetry.Core.Readings;

/// <summary>What committing a device batch did.</summary>
public enum CommitOutcome : byte
{
    /// <summary>The batch's new readings are durably stored (readings it repeats were not stored again).</summary>
    Stored = 1,

    /// <summary>The device's sequence number was already committed; nothing was stored again.</summary>
    Duplicate = 2,
}
