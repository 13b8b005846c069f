namespace Telemetry.Core.Alerts;

/// <summary>Whether an alert is about the patient (clinical) or about the equipment and data (technical).</summary>
public enum AlertCategory : byte
{
    Clinical = 1,
    Technical = 2,
}
