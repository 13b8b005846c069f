using System.Text;

namespace Telemetry.Core.Vitals;

/// <summary>A unit a vital may arrive in and how to turn it into the canonical UCUM unit: canonical = value * Scale + Offset.</summary>
public sealed record UnitConversion(string Unit, double Scale = 1, double Offset = 0)
{
    /// <summary>The unit as UTF-8, so decoders match it without allocating.</summary>
    public byte[] Utf8 { get; } = Encoding.UTF8.GetBytes(Unit);

    public double ToCanonical(double value) => (value * Scale) + Offset;
}
