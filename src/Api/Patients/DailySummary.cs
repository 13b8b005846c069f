namespace Telemetry.Api.Patients;

/// <summary>A patient's progress day by day, in their own time zone.</summary>
public sealed record DailySummary(string PatientId, string TimeZone, int StepsGoal, IReadOnlyList<DaySummary> Days);

/// <summary>
/// One day: steps taken (and whether the goal was met), mean resting heart rate, hours slept (sleep that ended that
/// day) and the last weight of the day. A vital with no reading that day is null.
/// </summary>
public sealed record DaySummary(DateOnly Date, long? Steps, bool? StepsGoalMet, double? RestingHeartRate, double? SleepHours, double? WeightKg);
