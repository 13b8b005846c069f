using Telemetry.Core.Vitals;

namespace Telemetry.Core.Alerts;

/// <summary>Checks a rule set before it is saved, so a clinician hears at once what is wrong with a rule rather than getting silence later.</summary>
public static class AlertRuleValidation
{
    public const int MaxRules = 64;
    public const int MaxDurationSeconds = 7 * 24 * 3600;
    public const int MinWindowSeconds = 60;
    public const int MaxWindowSeconds = 6 * 3600;
    public const int MinSilenceSeconds = 5;

    /// <summary>Every problem of <paramref name="rules"/>, keyed by the field it is about (<c>rules[2].level</c>); empty when the set is good.</summary>
    public static Dictionary<string, string[]> Validate(AlertRuleSet rules)
    {
        var errors = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        void Add(string field, string message)
        {
            if (!errors.TryGetValue(field, out var list))
            {
                errors[field] = list = [];
            }

            list.Add(message);
        }

        if (rules.Rules is null)
        {
            Add("rules", "required");
            return Freeze(errors);
        }

        if (rules.Rules.Length > MaxRules)
        {
            Add("rules", $"at most {MaxRules} rules");
        }

        var ids = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < rules.Rules.Length; i++)
        {
            var rule = rules.Rules[i];
            var at = $"rules[{i}]";
            if (rule is null)
            {
                Add(at, "a rule is required");
                continue;
            }

            if (!Identifier.IsValid(rule.Id) || rule.Id.Length > 64)
            {
                Add($"{at}.id", "1 to 64 characters of letters, digits and - _ : .");
            }
            else if (!ids.Add(rule.Id))
            {
                Add($"{at}.id", $"'{rule.Id}' is used by another rule");
            }

            if (!Enum.IsDefined(rule.Priority))
            {
                Add($"{at}.priority", "high, medium or low");
            }
            else if (rule.Category == AlertCategory.Technical && rule.Priority == AlertPriority.High)
            {
                Add($"{at}.priority", "a technical alert is medium or low: high is kept for the patient's condition");
            }

            if (rule.Kind is { } kind && !VitalCatalogue.TryGet(kind, out _))
            {
                Add($"{at}.kind", "not a vital of the catalogue");
            }

            CheckDuration(rule.SustainSeconds, $"{at}.sustainSeconds", Add);
            CheckDuration(rule.RearmSeconds, $"{at}.rearmSeconds", Add);
            if (rule.EscalateAfterSeconds is { } escalate && (escalate < 1 || escalate > MaxDurationSeconds))
            {
                Add($"{at}.escalateAfterSeconds", $"1 to {MaxDurationSeconds} seconds");
            }

            switch (rule.Type)
            {
                case AlertRuleType.Threshold:
                    RequireKind(rule, at, Add);
                    if (CheckLevels(rule, at, [AlertDirection.Above, AlertDirection.Below], "above or below", Add)
                        && rule.Kind is { } watched && VitalCatalogue.TryGet(watched, out var vital))
                    {
                        CheckPlausible(rule, vital, at, Add);
                    }

                    break;
                case AlertRuleType.RateOfChange:
                    RequireKind(rule, at, Add);
                    CheckLevels(rule, at, [AlertDirection.Rising, AlertDirection.Falling], "rising or falling", Add);
                    if (rule.Level is <= 0)
                    {
                        Add($"{at}.level", "a rate per minute greater than 0");
                    }

                    // A rate is judged in its direction, and clears once it falls below the clear level: below 0 would ask
                    // for the opposite trend, and at 0 too (a value that levels off, its rate about 0, might never clear).
                    if (rule.ClearLevel is <= 0)
                    {
                        Add($"{at}.clearLevel", "a rate per minute greater than 0: the alert clears once the rate falls below it, and a value that levels off has a rate of about 0");
                    }

                    if (rule.WindowSeconds is { } window && (window < MinWindowSeconds || window > MaxWindowSeconds))
                    {
                        Add($"{at}.windowSeconds", $"{MinWindowSeconds} to {MaxWindowSeconds} seconds");
                    }

                    break;
                case AlertRuleType.NoData:
                    if (rule.SilenceSeconds is not { } silence || silence < MinSilenceSeconds || silence > MaxDurationSeconds)
                    {
                        Add($"{at}.silenceSeconds", $"required: {MinSilenceSeconds} to {MaxDurationSeconds} seconds");
                    }

                    break;
                case AlertRuleType.EarlyWarning:
                    if (rule.Kind is not null)
                    {
                        Add($"{at}.kind", "an early-warning score is computed from all of its vitals: leave kind out");
                    }

                    CheckLevels(rule, at, [AlertDirection.Above], "above", Add);
                    // Five vitals of 3 points at most: a level above 15 could never be reached.
                    if (rule.Level is { } score && (score < 1 || score > 15))
                    {
                        Add($"{at}.level", "a NEWS2 score from 1 to 15, the most the five vitals it is computed from can score");
                    }

                    // The alert clears once the score falls below its clear level: below 1 it never would.
                    if (rule.ClearLevel is { } clearScore && clearScore < 1)
                    {
                        Add($"{at}.clearLevel", "a NEWS2 score from 1 to the level: the alert clears when the score falls below it");
                    }

                    break;
                case AlertRuleType.Implausible:
                    break;
                default:
                    Add($"{at}.type", "threshold, rate_of_change, no_data, early_warning or implausible");
                    break;
            }
        }

        return Freeze(errors);
    }

    private static void RequireKind(AlertRule rule, string at, Action<string, string> add)
    {
        if (rule.Kind is null)
        {
            add($"{at}.kind", "required: the vital this rule watches");
        }
    }

    /// <summary>
    /// A threshold is compared with readings in the vital's canonical unit, and a reading outside its plausible range
    /// never reaches the rules: a level beyond it (a temperature in °F, SpO2 as a fraction) would never fire, or fire
    /// on every reading, with no one told.
    /// </summary>
    private static void CheckPlausible(AlertRule rule, VitalDefinition vital, string at, Action<string, string> add)
    {
        var range = $"in {vital.Unit} (the unit {vital.Name} is judged in), inside its plausible range {vital.PlausibleMin} to {vital.PlausibleMax}";
        // Strictly inside: a rule fires at or past its level, so "below" the plausible maximum would fire on every
        // reading, and below the minimum on none (and "above" the other way round).
        var level = rule.Level!.Value;
        if (level <= vital.PlausibleMin || level >= vital.PlausibleMax)
        {
            add($"{at}.level", $"{range}, strictly: a level at either end fires on every reading or on none");
        }

        // Strictly inside too: an alert clears once a value is past its clear level, and no plausible reading is past
        // either end (SpO2 below 90 clearing above 100 would stay open for good, and its rule silent for every later
        // episode).
        if (rule.ClearLevel is { } clear && double.IsFinite(clear) && (clear <= vital.PlausibleMin || clear >= vital.PlausibleMax))
        {
            add($"{at}.clearLevel", $"{range}, strictly: no reading is past either end, so the alert would never clear");
        }
    }

    /// <summary>Checks the direction and levels; true when the level is there to check further.</summary>
    private static bool CheckLevels(AlertRule rule, string at, AlertDirection[] directions, string allowed, Action<string, string> add)
    {
        var direction = rule.Direction ?? (directions.Length == 1 ? directions[0] : (AlertDirection?)null);
        if (direction is null || !directions.Contains(direction.Value))
        {
            add($"{at}.direction", $"required: {allowed}");
            return false;
        }

        if (rule.Level is not { } level || !double.IsFinite(level))
        {
            add($"{at}.level", "required: the level that raises the alert");
            return false;
        }

        if (rule.ClearLevel is not { } clear)
        {
            return true;
        }

        // Hysteresis: the clear level lies on the safe side of the raise level, or the alert could never clear.
        var safeSide = direction is AlertDirection.Below ? clear >= level : clear <= level;
        if (!double.IsFinite(clear) || !safeSide)
        {
            add($"{at}.clearLevel", direction is AlertDirection.Below
                ? "at or above the level: the value must recover past it before the alert clears"
                : "at or below the level: the value must recover past it before the alert clears");
        }

        return true;
    }

    private static void CheckDuration(int seconds, string field, Action<string, string> add)
    {
        if (seconds < 0 || seconds > MaxDurationSeconds)
        {
            add(field, $"0 to {MaxDurationSeconds} seconds");
        }
    }

    private static Dictionary<string, string[]> Freeze(Dictionary<string, List<string>> errors) =>
        errors.ToDictionary(pair => pair.Key, pair => pair.Value.ToArray(), StringComparer.Ordinal);
}
