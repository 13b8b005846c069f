using System.Collections.Concurrent;
using Telemetry.Core.Alerts;

namespace Telemetry.Grains.Tests.Alerts;

/// <summary>Keeps what the grains publish, so a test can see what subscribers would have been sent.</summary>
public sealed class RecordingAlertPublisher : IAlertPublisher
{
    private readonly ConcurrentQueue<AlertEvent> _published = new();

    public IReadOnlyList<AlertEvent> Published => [.. _published];

    public void Publish(IReadOnlyList<AlertEvent> events)
    {
        foreach (var item in events)
        {
            _published.Enqueue(item);
        }
    }

    public IReadOnlyList<AlertEvent> Of(string patientId) => Published.Where(e => e.PatientId == patientId).ToList();
}
