namespace Telemetry.Core.Vitals;

/// <summary>A vital sign the catalogue knows. Stored as one byte; values never change meaning.</summary>
public enum VitalKind : byte
{
    HeartRate = 1,
    RestingHeartRate = 2,
    RespiratoryRate = 3,
    OxygenSaturation = 4,
    BodyTemperature = 5,
    SystolicPressure = 6,
    DiastolicPressure = 7,
    Steps = 8,
    BodyWeight = 9,
    BloodGlucose = 10,
    SleepDuration = 11,
}
