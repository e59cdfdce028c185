using AttentionLab.Papers.S2Attention;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class S2ExperimentTests
{
    [Fact]
    public void SmokeClaimHolds()
    {
        var c = S2Experiment.Config.Smoke;
        var r = S2Experiment.Run(c, CPU);
        Assert.Equal(S2Experiment.Variants.Length * c.Lengths.Length, r.ToDataFrame().Rows.Count);
        double dense = r.Accuracy("dense"), hetero = r.Accuracy("heterogeneous");
        Assert.True(hetero >= dense - 0.05, $"heterogeneous {hetero:P1} < dense {dense:P1} − 5 pts");
        Assert.True(r.OffStrideAccuracy("homogeneous") < 0.5, $"homogeneous reads off-stride needles: {r.OffStrideAccuracy("homogeneous"):P1}");
        Assert.True(r.OffStrideAccuracy("heterogeneous") >= 0.9, $"heterogeneous off-stride {r.OffStrideAccuracy("heterogeneous"):P1}");
        var het = r.Rows.Where(x => x.Variant == "heterogeneous").ToArray();
        Assert.All(het, x => Assert.Equal(1.0, x.Coverage));
        Assert.All(het, x => Assert.True(x.Density < 0.7, $"density {x.Density} at n = {x.Length}"));
        var last = r.Decode[^1];
        Assert.True(last.KvBytes < last.FullKvBytes);
    }

    [Fact]
    public void BadConfigNamesTheField()
    {
        Assert.Equal("Lengths", Assert.Throws<ArgumentException>(() => (S2Experiment.Config.Smoke with { Lengths = Array.Empty<int>() }).Validate()).ParamName);
        Assert.Equal("Depths", Assert.Throws<ArgumentException>(() => (S2Experiment.Config.Smoke with { Depths = new[] { 1.0 } }).Validate()).ParamName);
    }
}
