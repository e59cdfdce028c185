using AttentionLab.Bench;
using Microsoft.Data.Analysis;

namespace AttentionLab.Tests.Bench;

public class SweepTests
{
    static readonly int[] Lengths = [256, 512, 1024, 2048, 4096];

    /// <summary>linear: 0.01·n ms; quadratic: 1e-5·n² ms (faster below n = 1000, slower above); cubic once, at 256.</summary>
    static List<SweepPoint> Points(string? pass = null) =>
        Lengths.SelectMany(n => new[]
        {
            new SweepPoint("linear", n, 0.01 * n, 0.5 * n, pass),
            new SweepPoint("quadratic", n, 1e-5 * n * n, 1e-3 * n * n, pass),
        }).Append(new SweepPoint("cubic", 256, 1, null, pass)).ToList();

    [Fact]
    public void SlopesOfExactPowerLawsAreTheirExponents()
    {
        var slopes = Sweep.Slopes(Points());
        Assert.Equal(1.0, slopes["linear"], 10);
        Assert.Equal(2.0, slopes["quadratic"], 10);
        Assert.False(slopes.ContainsKey("cubic"));                                  // one length: no slope
        Assert.Equal(2.0, Sweep.MemorySlopes(Points())["quadratic"], 10);
        var shifted = Points().Select(p => p with { MedianMs = p.MedianMs * 1.05 });   // a constant factor leaves the slope
        Assert.Equal(2.0, Sweep.Slopes(shifted)["quadratic"], 10);
    }

    [Fact]
    public void CrossoverIsTheFirstLengthFromWhichAMethodStaysFaster()
    {
        Assert.Equal(1024, Sweep.Crossover(Points(), "linear", "quadratic"));      // 10.24 ms vs 10.49 ms at 1024; slower at 512
        Assert.Null(Sweep.Crossover(Points(), "quadratic", "linear"));              // never faster at the long end
        Assert.Null(Sweep.Crossover(Points(), "linear", "linear"));
        Assert.Null(Sweep.Crossover(Points(), "linear", "absent"));
        var noisy = Points().Select(p => p.Method == "linear" && p.SeqLen == 2048 ? p with { MedianMs = 100 } : p).ToList();
        Assert.Equal(4096, Sweep.Crossover(noisy, "linear", "quadratic"));         // a loss at 2048 moves it past 2048
    }

    [Fact]
    public void SpeedupIsTheBaselineOverTheMethodAtOneLength()
    {
        Assert.Equal(1e-5 * 4096 * 4096 / (0.01 * 4096), Sweep.Speedup(Points(), "linear", "quadratic", 4096)!.Value, 10);
        Assert.Null(Sweep.Speedup(Points(), "linear", "cubic", 512));
    }

    [Fact]
    public void PassesAreKeptApartAndMixedPassesMustBeNamed()
    {
        var both = Points("forward").Concat(Points("backward").Select(p => p with { MedianMs = 2 * p.MedianMs })).ToList();
        var e = Assert.Throws<ArgumentException>(() => Sweep.Slopes(both));
        Assert.Equal("pass", e.ParamName);
        Assert.Equal(1.0, Sweep.Slopes(both, "backward")["linear"], 10);
        Assert.Equal(1024, Sweep.Crossover(both, "linear", "quadratic", "forward"));
        Assert.Equal(1.0, Sweep.Speedup(both, "linear", "linear", 256, "backward"));
    }

    [Fact]
    public void BadInputIsNamed()
    {
        Assert.Equal("points", Assert.Throws<ArgumentNullException>(() => Sweep.Slopes<SweepPoint>(null!)).ParamName);
        Assert.Equal("points", Assert.Throws<ArgumentException>(() => Sweep.Slopes(new[] { new SweepPoint("a", 0, 1), new SweepPoint("a", 2, 1) })).ParamName);
        Assert.Equal("points", Assert.Throws<ArgumentException>(() => Sweep.Slopes(new SweepPoint[] { null! })).ParamName);
        Assert.Equal("method", Assert.Throws<ArgumentException>(() => Sweep.Crossover(Points(), "", "linear")).ParamName);
        // log of 0 ms
        Assert.Equal("y", Assert.Throws<ArgumentException>(() => Sweep.Slopes(new[] { new SweepPoint("a", 1, 1), new SweepPoint("a", 2, 0) })).ParamName);
    }

    [Fact]
    public void TheTableHasThePassOnlyWhenTheSweepHasOne()
    {
        var plain = Sweep.ToDataFrame(Points(), ("speedup_vs_quadratic", "quadratic"));
        Assert.Equal(["method", "seq_len", "median_ms", "peak_mib", "speedup_vs_quadratic"], plain.Columns.Select(c => c.Name));
        Assert.Equal(1.0, (double)plain["speedup_vs_quadratic"][1]!, 12);           // quadratic against itself
        Assert.Equal(1e-5 * 256 * 256, (double)plain["speedup_vs_quadratic"][plain.Rows.Count - 1]!, 12);   // cubic (1 ms) at 256
        var withPass = Sweep.ToDataFrame(Points("forward"));
        Assert.Equal(["pass", "method", "seq_len", "median_ms", "peak_mib"], withPass.Columns.Select(c => c.Name));
        Assert.IsType<Int32DataFrameColumn>(withPass["seq_len"]);
    }
}
