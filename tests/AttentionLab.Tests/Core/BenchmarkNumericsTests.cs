using AttentionLab.Core;

namespace AttentionLab.Tests.Core;

public class BenchmarkNumericsTests
{
    static readonly (string Method, int T, double Ms)[] Rows =
    {
        ("fast", 256, 3), ("slow", 256, 1),
        ("fast", 512, 2), ("slow", 512, 4),                                       // faster here, but not at 1024:
        ("fast", 1024, 9), ("slow", 1024, 8),
        ("fast", 2048, 10), ("slow", 2048, 32), ("fast", 4096, 20), ("slow", 4096, 128),
    };

    [Fact]
    public void CrossoverIsWhereTheMethodStaysFaster()
    {
        Assert.Equal(2048, Numerics.Crossover(Rows, r => r.Method, r => r.T, r => r.Ms, "fast", "slow"));
        Assert.Null(Numerics.Crossover(Rows, r => r.Method, r => r.T, r => r.Ms, "slow", "fast"));
    }

    [Fact]
    public void CrossoverTakesTheFastestOfRepeatedRowsAndNoneAgainstItself()
    {
        var repeated = Rows.Concat(Rows).Append((Method: "fast", T: 1024, Ms: 7.5)).ToArray();           // a second run; fast wins at 1024 once
        Assert.Equal(512, Numerics.Crossover(repeated, r => r.Method, r => r.T, r => r.Ms, "fast", "slow"));
        Assert.Null(Numerics.Crossover(repeated, r => r.Method, r => r.T, r => r.Ms, "slow", "slow"));   // the CLI asks reference vs reference
    }

    [Fact]
    public void SlopesFitTimeAgainstLengthPerMethod()
    {
        var quadratic = new[] { 256, 512, 1024 }.Select(t => ("q", t, 1e-6 * t * t));
        var slopes = Numerics.SlopesByMethod(quadratic.Append(("single", 256, 1.0)), r => r.Item1, r => r.Item2, r => r.Item3);
        Assert.Equal(2.0, slopes["q"], 9);
        Assert.False(slopes.ContainsKey("single"));                                 // one length gives no slope
    }
}
