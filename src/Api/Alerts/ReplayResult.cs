using Telemetry.Core.Alerts;

namespace Telemetry.Api.Alerts;

/// <summary>What a proposed rule set would have raised over a stored range of the patient's readings.</summary>
public sealed record ReplayResult(string PatientId, DateTimeOffset From, DateTimeOffset To, int Readings, bool Truncated, IReadOnlyList<Alert> Alerts);
