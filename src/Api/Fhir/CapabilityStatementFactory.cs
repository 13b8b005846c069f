using Hl7.Fhir.Model;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Telemetry.Api.Trends;

namespace Telemetry.Api.Fhir;

/// <summary>The CapabilityStatement: exactly what this FHIR endpoint serves, and how its Observations are shaped.</summary>
public static class CapabilityStatementFactory
{
    private const string SearchParameterBase = "http://hl7.org/fhir/SearchParameter/";
    private const string RestfulSecurityService = "http://terminology.hl7.org/CodeSystem/restful-security-service";
    private const string OAuthUris = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

    /// <summary>
    /// The statement for the FHIR base at <paramref name="baseUrl"/>; with <paramref name="provider"/> (the OpenID
    /// Connect provider tokens come from), its security names SMART on FHIR and the provider's endpoints.
    /// </summary>
    public static CapabilityStatement Create(string baseUrl, OpenIdConnectConfiguration? provider = null)
    {
        var version = typeof(CapabilityStatementFactory).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";
        var observation = new CapabilityStatement.ResourceComponent
        {
            Type = "Observation",

            // No base profile: blood glucose (laboratory), steps and sleep (activity) claim none; vital signs claim theirs.
            SupportedProfile = [.. FhirVitals.All.SelectMany(s => s.Profiles).Distinct()],
            Documentation =
                "Vital signs, blood glucose (category laboratory) and steps and sleep duration (category activity) of one patient per request, "
                + "coded with LOINC and UCUM; vital signs claim the vitalsigns profile and their specific one. Searches over a long range return one Observation per "
                + "rollup window (resolution auto: raw readings up to 1 hour, 1-minute windows up to 1 day, 1-hour windows up to 62 days, "
                + "1-day windows beyond). A window's value is its mean over effectivePeriod; its minimum, maximum and count are components "
                + $"coded from {FhirVitals.StatisticsSystem} (in the blood pressure panel named by their part in code.text, as the bp profile takes a component coded 8480-6 or 8462-4 as the part's value, which a window, and a $stats answer, carry once each with the mean). "
                + "Raw readings carry effectiveDateTime and the sending device. Blood pressure is the 85354-9 panel with 8480-6 and 8462-4 "
                + "components; SpO2 carries both 59408-5 and 2708-6. Without 'date', a search covers the 30 days up to now. Results sort by "
                + $"date (ascending, or _sort=-date) and page with _count (default {FhirEndpoints.DefaultCount}, at most {FhirEndpoints.MaxCount}) "
                + "and the next/previous links.",
            Interaction = { new CapabilityStatement.ResourceInteractionComponent { Code = CapabilityStatement.TypeRestfulInteraction.SearchType } },
            SearchParam =
            {
                Param("patient", SearchParameterBase + "clinical-patient", SearchParamType.Reference, "Required (or subject): Patient/{id}. One patient per search."),
                Param("subject", SearchParameterBase + "Observation-subject", SearchParamType.Reference, "Patient/{id}."),
                Param("code", SearchParameterBase + "clinical-code", SearchParamType.Token, "LOINC code, with or without http://loinc.org|; comma for OR."),
                Param("category", SearchParameterBase + "Observation-category", SearchParamType.Token, "vital-signs, laboratory (blood glucose) or activity (steps, sleep duration)."),
                Param("date", SearchParameterBase + "clinical-date", SearchParamType.Date, "Prefixes ge, gt, le, lt, eq; any precision; UTC unless a zone is given."),
                Param("resolution", null, SearchParamType.Token,
                    $"auto (default), raw, 1m, 1h or 1d. Raw readings at most {TrendReader.MaxRawReadings} per code; windows at most {TrendReader.MaxWindows} per code."),
                Param("_count", null, SearchParamType.Number, $"Page size (default {FhirEndpoints.DefaultCount}; a larger one is cut to {FhirEndpoints.MaxCount})."),
                Param("_offset", null, SearchParamType.Number, "Where the page starts in the list (the paging links carry it)."),
                Param("_sort", null, SearchParamType.String, "date (default) or -date."),
            },
            Operation =
            {
                new CapabilityStatement.OperationComponent
                {
                    Name = "lastn",
                    Definition = "http://hl7.org/fhir/OperationDefinition/Observation-lastn",
                    Documentation = $"The latest raw readings per code (max, default 1, at most {FhirEndpoints.MaxLastN}); patient and category or code required.",
                },
                new CapabilityStatement.OperationComponent
                {
                    Name = "stats",
                    Definition = "http://hl7.org/fhir/OperationDefinition/Observation-stats",
                    Documentation = $"Exact statistics ({string.Join(", ", ObservationFactory.Statistics)}) over 'duration' hours up to now or a 'period' (POST Parameters); include=true is not supported.",
                },
            },
        };

        return new CapabilityStatement
        {
            Status = PublicationStatus.Active,
            Date = DateTimeOffset.UtcNow.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture),
            Publisher = "Telemetry",
            Kind = CapabilityStatementKind.Instance,
            Software = new CapabilityStatement.SoftwareComponent { Name = "Telemetry", Version = version },
            Implementation = new CapabilityStatement.ImplementationComponent { Description = "Telemetry wearable vital signs", Url = baseUrl },
            FhirVersion = FHIRVersion.N4_0_1,
            Format = ["application/fhir+json", "json"],
            Rest =
            {
                new CapabilityStatement.RestComponent
                {
                    Mode = CapabilityStatement.RestfulCapabilityMode.Server,
                    Documentation = "Read-only access to wearable vital signs, blood glucose and activity. Every request but metadata needs 'Authorization: Bearer <token>'.",
                    Security = Security(provider),
                    Resource =
                    {
                        observation,
                        new CapabilityStatement.ResourceComponent
                        {
                            Type = "AuditEvent",
                            Documentation = "The audit log of every access to a patient's record, newest first; admins only. patient (or entity) narrows it to one patient.",
                            Interaction =
                            {
                                new CapabilityStatement.ResourceInteractionComponent { Code = CapabilityStatement.TypeRestfulInteraction.SearchType },
                                new CapabilityStatement.ResourceInteractionComponent { Code = CapabilityStatement.TypeRestfulInteraction.Read, Documentation = "By its id, the record's sequence number (an entry's fullUrl)." },
                            },
                            SearchParam =
                            {
                                Param("patient", SearchParameterBase + "AuditEvent-patient", SearchParamType.Reference, "Patient/{id}: accesses to this patient's record."),
                                Param("entity", SearchParameterBase + "AuditEvent-entity", SearchParamType.Reference, "Patient/{id}, as patient."),
                                Param("date", SearchParameterBase + "AuditEvent-date", SearchParamType.Date, "When the access was recorded; a full page's next link narrows it."),
                                Param("_count", null, SearchParamType.Number, $"How many, newest first (default {FhirEndpoints.DefaultCount}, at most {FhirEndpoints.MaxCount})."),
                                Param("_before", null, SearchParamType.Number, "The records before this sequence number (a full page's next link carries it)."),
                            },
                        },
                    },
                },
            },
        };
    }

    /// <summary>
    /// SMART on FHIR with the provider's authorize and token endpoints (as SMART's oauth-uris extension, beside
    /// <c>.well-known/smart-configuration</c>); none without a provider, whose development tokens no app can obtain.
    /// </summary>
    private static CapabilityStatement.SecurityComponent? Security(OpenIdConnectConfiguration? provider)
    {
        if (provider is null)
        {
            return null;
        }

        // Only the endpoints the provider names: an extension without a value is not valid FHIR.
        var uris = new Extension { Url = OAuthUris };
        foreach (var (name, uri) in new[] { ("authorize", provider.AuthorizationEndpoint), ("token", provider.TokenEndpoint) })
        {
            if (!string.IsNullOrEmpty(uri))
            {
                uris.AddExtension(name, new FhirUri(uri));
            }
        }

        return new CapabilityStatement.SecurityComponent
        {
            Service = [new CodeableConcept(RestfulSecurityService, "SMART-on-FHIR", "SMART on FHIR")],
            Description = "Bearer tokens from the OpenID Connect provider named here (SMART App Launch; see .well-known/smart-configuration for its endpoints and the scopes this server reads).",
            Extension = uris.Extension.Count == 0 ? [] : [uris],
        };
    }

    private static CapabilityStatement.SearchParamComponent Param(string name, string? definition, SearchParamType type, string documentation) =>
        new() { Name = name, Definition = definition, Type = type, Documentation = documentation };
}
