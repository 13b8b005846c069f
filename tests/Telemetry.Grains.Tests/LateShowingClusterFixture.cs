namespace Telemetry.Grains.Tests;

/// <summary>The same silo, its raw store showing commits late (<see cref="LateShowingRawStore"/>).</summary>
public sealed class LateShowingClusterFixture : ClusterFixture
{
    protected override bool StoreShowsCommitsLate => true;
}
