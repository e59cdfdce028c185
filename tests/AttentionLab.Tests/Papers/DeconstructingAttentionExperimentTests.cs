using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Papers.DeconstructingAttention;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>The notebook's smoke run, once; claims built by hand flip with their measurements; the bigram reference by hand.</summary>
public class DeconstructingAttentionExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void SmokeRunHoldsItsClaimsAtSeed0()
    {
        var config = DeconstructingAttentionExperiment.Config.Smoke;
        var result = DeconstructingAttentionExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine(string.Join(", ", result.PhaseSeconds.Select(p => $"{p.Key} {p.Value:F1} s")));
        var claims = result.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        foreach (var s in claims.Observations) output.WriteLine(s);
        Assert.Empty(claims.Failures);

        Assert.Equal(7, result.Exactness.Variants.Count);
        Assert.Equal(1 + config.Variants.Length * (1 + config.HybridSchedules.Length), result.Runs.Count);
        Assert.All(result.Runs, r => Assert.Equal(config.Steps, r.Losses.Count));
        Assert.All(result.Runs, r => Assert.True(double.IsFinite(r.ValLoss) && r.ValLoss < result.UnigramLoss + 1, $"{r.Variant} {r.Schedule} {r.ValLoss}"));
        Assert.Equal(new[] { "variant", "schedule", "params", "val_loss", "perplexity", "delta_to_standard", "seconds" },
            result.ToDataFrame().Columns.Select(c => c.Name));
        Assert.True(result.BigramLoss < result.UnigramLoss);
        Assert.Contains(result.Patterns, p => p.Variant == "StaticMix" && p.Schedule == config.UniformSchedule);
        Assert.All(result.Patterns, p => Assert.All(p.Rows, row => Assert.Equal(1.0, row.Sum(), 5)));
    }

    static DeconstructingAttentionResult Fake(double standard, double noMix, double staticUniform, double staticHybrid, double decUniform, double decHybrid,
        double bigram, double twinError = 1e-15, double rowSum = 0)
    {
        var config = DeconstructingAttentionExperiment.Config.Smoke;
        var checks = Enum.GetValues<MixerKind>().Select(k => new VariantCheck(k.ToString(), twinError, 0, 0, true, rowSum, 100)).ToList();
        var exact = new DeconstructingExactness(checks, 1e-8, 0, 0);
        LmRun Run(string v, string s, double loss, long p = 1000) => new(v, s, p, loss, new[] { 1.0 }, 1);
        var runs = new List<LmRun>
        {
            Run("Standard", "SS", standard), Run("NoMix", "VV", noMix, 900), Run("NoMix", "SV", noMix - 0.5, 950),
            Run("StaticMix", "VV", staticUniform, 910), Run("StaticMix", "SV", staticHybrid, 955),
            Run("DecoupledQK", "VV", decUniform), Run("DecoupledQK", "SV", decHybrid),
        };
        return new DeconstructingAttentionResult(config, exact, runs, bigram, 3.2, new List<PatternMap>(), 1, new Dictionary<string, double>());
    }

    [Fact]
    public void ClaimsFollowTheMeasurements()
    {
        var good = Fake(standard: 1.5, noMix: 2.5, staticUniform: 2.0, staticHybrid: 1.55, decUniform: 1.7, decHybrid: 1.6, bigram: 2.45).Claims();
        Assert.Empty(good.Failures);
        foreach (var id in new[] { "nomix-collapses", "hybrid-staticmix-near-standard", "staticmix-uniform-worse-than-hybrid",
                     "hybrid-beats-uniform-every-variant", "parameter-counts", "variants-equal-naive" })
            Assert.Equal(ClaimStatus.Holds, good[id].Status);

        // NoMix as good as standard: no collapse; NoMix better than the bigram model by > 10 %: fails the second half
        Assert.Equal(ClaimStatus.DoesNotHold, Fake(1.5, 1.6, 2.0, 1.55, 1.7, 1.6, 2.45).Claims()["nomix-collapses"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, Fake(1.0, 2.2, 2.0, 1.05, 1.7, 1.6, 2.45).Claims()["nomix-collapses"].Status);
        // hybrid StaticMix 20 % worse than standard (ln 1.2 ≈ 0.18 nats)
        var far = Fake(1.5, 2.5, 2.0, 1.5 + Math.Log(1.2), 1.7, 1.6, 2.45).Claims();
        Assert.Equal(ClaimStatus.DoesNotHold, far["hybrid-staticmix-near-standard"].Status);
        Assert.Contains(far.Failures, f => f.Id == "hybrid-staticmix-near-standard");
        // uniform StaticMix better than hybrid
        var inverted = Fake(1.5, 2.5, 1.52, 1.55, 1.7, 1.6, 2.45).Claims();
        Assert.Equal(ClaimStatus.DoesNotHold, inverted["staticmix-uniform-worse-than-hybrid"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, inverted["hybrid-beats-uniform-every-variant"].Status);
        // a DecoupledQK hybrid worse than its uniform model
        Assert.Equal(ClaimStatus.DoesNotHold, Fake(1.5, 2.5, 2.0, 1.55, 1.6, 1.7, 2.45).Claims()["hybrid-beats-uniform-every-variant"].Status);
        // exactness
        Assert.Contains(Fake(1.5, 2.5, 2.0, 1.55, 1.7, 1.6, 2.45, twinError: 1e-6).Claims().Failures, f => f.Id == "variants-equal-naive");
        Assert.Contains(Fake(1.5, 2.5, 2.0, 1.55, 1.7, 1.6, 2.45, rowSum: 1e-3).Claims().Failures, f => f.Id == "patterns-causal-rows-sum-to-one");
        Assert.Contains(Fake(1.5, 2.5, 2.0, 1.55, 1.7, 1.6, 2.45, twinError: double.NaN).Claims().Failures, f => f.Id == "variants-equal-naive");
    }

    [Fact]
    public void BigramLossMatchesAHandCount()
    {
        // "abababab…": after 'a' always 'b' and back; with α the probability is (n + α)/(n_a + 2α)
        var text = string.Concat(Enumerable.Repeat("ab", 20));
        var corpus = new TextCorpus(text, "ab");
        double alpha = 0.5;
        var ids = corpus.Encode(text);
        int train = corpus.TrainLength;
        double nA = 0, nB = 0;
        for (int i = 0; i + 1 < train; i++) { if (ids[i] == 0) nA++; else nB++; }
        double expected = 0;
        int n = 0;
        for (int i = train; i + 1 < ids.Length; i++, n++)
        {
            double rows = ids[i] == 0 ? nA : nB;
            expected -= Math.Log((rows + alpha) / (rows + 2 * alpha));
        }
        Assert.Equal(expected / n, DeconstructingAttentionExperiment.BigramLoss(corpus, alpha), 12);
        Assert.Throws<ArgumentException>(() => DeconstructingAttentionExperiment.BigramLoss(corpus, 0));
    }
}
