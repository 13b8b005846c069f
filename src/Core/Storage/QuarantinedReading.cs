using Telemetry.Core.Readings;

namespace Telemetry.Core.Storage;

/// <summary>A reading kept apart from the patient's series, with the reason it was refused.</summary>
public sealed record QuarantinedReading(VitalReading Reading, string Reason);
