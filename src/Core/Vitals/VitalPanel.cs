namespace Telemetry.Core.Vitals;

/// <summary>Two vitals measured together and sent as one reading with a pair of values, such as blood pressure.</summary>
public sealed record VitalPanel(string Name, string Loinc, string Display, VitalDefinition First, VitalDefinition Second);
