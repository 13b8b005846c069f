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
        var method = record.Action.Split(' ', 2)[0];
        var (interaction, action) = method switch
        {
            "GET" => ("read", AuditEvent.AuditEventAction.R),
            "POST" => ("create", AuditEvent.AuditEventAction.E),
            "PUT" => ("update", AuditEvent.AuditEventAction.U),
            "DELETE" => ("delete", AuditEvent.AuditEventAction.D),
            _ => ("operation", AuditEvent.AuditEventAction.E),
        };
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
}
