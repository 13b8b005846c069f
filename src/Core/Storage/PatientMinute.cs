using Telemetry.Core.Grains;

namespace Telemetry.Core.Storage;

/// <summary>A minute in which commits stored readings of a patient.</summary>
public readonly record struct PatientMinute(string PatientId, CommittedMinute Minute);
