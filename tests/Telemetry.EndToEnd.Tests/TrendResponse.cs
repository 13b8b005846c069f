namespace Telemetry.EndToEnd.Tests;

/// <summary>The trend body as a client reads it.</summary>
public sealed record TrendResponse(string PatientId, string Kind, string Unit, string Resolution, List<TrendPointResponse> Points)
{
    public long TotalCount => Points.Sum(point => point.Count);
}

/// <summary>One window of a trend.</summary>
public sealed record TrendPointResponse(DateTimeOffset Start, long Count, double Min, double Max, double Mean);
