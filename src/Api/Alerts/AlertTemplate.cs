using Telemetry.Core.Alerts;

namespace Telemetry.Api.Alerts;

/// <summary>A named rule template, as listed for clinicians to start from.</summary>
public sealed record AlertTemplate(string Name, AlertRule[] Rules);
