using Hl7.Fhir.Model;
using Telemetry.Api.Audit;
using Telemetry.Storage.Audit;

namespace Telemetry.Api.Fhir;

/// <summary>An <see cref="AuditRecord"/> as a FHIR R4 AuditEvent: a RESTful operation by an agent on a patient's record.</summary>
public static class AuditEventFactory
{
    private const string EventTypeSystem = "http://terminology.hl7.org/CodeSystem/audit-event-type";
    private const string InteractionSystem = "http://hl7.org/fhir/restful-interaction";

    public static AuditEvent Create(AuditRecord record)
    {
        var (interaction, action) = Interaction(record.Action);
        var audit = new AuditEvent
        {
            Id = record.Seq.ToString(System.Globalization.CultureInfo.InvariantCulture),
            Type = new Coding(EventTypeSystem, "rest", "RESTful Operation"),
            Subtype = [new Coding(InteractionSystem, interaction)],
            Action = action,
            Recorded = record.At,
            Outcome = record.Outcome switch
            {
                "success" => AuditEvent.AuditEventOutcome.N0,
                "failed" => AuditEvent.AuditEventOutcome.N8,
                _ => AuditEvent.AuditEventOutcome.N4,
            },
            OutcomeDesc = $"{record.Status} {record.Outcome}",
            Agent =
            [
                new AuditEvent.AgentComponent
                {
                    Who = new ResourceReference { Identifier = new Identifier("urn:telemetry:subject", record.Actor), Display = record.Actor },
                    Role = [new CodeableConcept { Text = record.Role }],
                    Requestor = true,
                },
            ],
            Source = new AuditEvent.SourceComponent { Observer = new ResourceReference { Display = "Telemetry" } },
        };
        var entity = new AuditEvent.EntityComponent { Description = record.Action };
        if (record.PatientId is { } patientId)
        {
            entity.What = new ResourceReference("Patient/" + patientId);
        }

        audit.Entity.Add(entity);
        return audit;
    }

    /// <summary>
    /// The RESTful interaction a recorded request (<c>METHOD /path?query</c>) was, and its action as the Basic Audit Log
    /// Patterns code it: a FHIR search (<c>/fhir/Observation?…</c>) and an operation (<c>$stats</c>, an alert's replay)
    /// execute (E); a read reads (R); an acknowledgement or snooze updates the alert (U); other POSTs create (C).
    /// </summary>
    public static (string Interaction, AuditEvent.AuditEventAction Action) Interaction(string requestLine)
    {
        var parts = requestLine.Split(' ', 2);
        var path = parts.Length > 1 ? parts[1].Split('?', 2)[0] : string.Empty;
        var segments = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        return parts[0] switch
        {
            _ when path.Contains("/$", StringComparison.Ordinal) => ("operation", AuditEvent.AuditEventAction.E),
            "GET" when path == "/fhir/metadata" => ("capabilities", AuditEvent.AuditEventAction.R),
            "GET" when segments is ["fhir", _] => ("search-type", AuditEvent.AuditEventAction.E),
            "GET" => ("read", AuditEvent.AuditEventAction.R),
            "POST" when segments is [.., "ack" or "snooze"] => ("update", AuditEvent.AuditEventAction.U),
            "POST" when segments is [.., "replay"] => ("operation", AuditEvent.AuditEventAction.E),
            "POST" => ("create", AuditEvent.AuditEventAction.C),
            "PUT" => ("update", AuditEvent.AuditEventAction.U),
            "DELETE" => ("delete", AuditEvent.AuditEventAction.D),
            _ => ("operation", AuditEvent.AuditEventAction.E),
        };
    }
}
