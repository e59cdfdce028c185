using AttentionLab.Core;
using AttentionLab.Papers.RecycledAttention;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

public class RecycledExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void SmokeRunMeetsItsClaimsAtEqualKeyBudgets()
    {
        var config = RecycledExperiment.Config.Smoke;
        var result = RecycledExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine($"probe recycled: {string.Join(", ", result.Probe.Recycled.Select(x => x.ToString("F3")))}");
        output.WriteLine($"probe window:   {string.Join(", ", result.Probe.SinkWindow.Select(x => x.ToString("F3")))}");
        output.WriteLine($"elapsed {result.Elapsed.TotalSeconds:F1} s");

        // the claims: every exactness check and asserted claim holds (statuses are compared with tests/expected-claims.csv by the notebook test)
        var claims = result.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        foreach (var line in claims.Findings().Lines()) output.WriteLine(line);
        Assert.Empty(claims.Failures);
        Assert.Equal("smoke", claims.Size);

        // the table: the checkpoint copies, recycled reads a small subset, and every baseline reads exactly its budget
        var full = result.Row(RecycledExperiment.FullName, 0);
        Assert.True(full.TokenAccuracy > 0.9, $"the checkpoint copies: full accuracy {full.TokenAccuracy:P0}");
        var recycled = result.ClaimRow;
        Assert.True(recycled.AttendedMean < full.AttendedMean / 2, "recycled steps attend a small subset on average");
        Assert.InRange(recycled.FullStepFraction, 0.01, 0.5);                                      // full steps are counted in its budget
        int budget = result.ClaimBudget;
        Assert.InRange(budget - recycled.AttendedMean, 0, 1);
        foreach (var p in new[] { RecycledExperiment.StreamingName, RecycledExperiment.H2OName, RecycledExperiment.OracleName })
            Assert.Equal(budget, result.Row(p, budget).AttendedMean, 9);                            // equal keys per step
        foreach (var r in result.Rows.Where(r => r.Policy == RecycledExperiment.Recycled))
            Assert.Contains(result.Rows, b => b.Policy == RecycledExperiment.StreamingName && b.TopK == RecycledExperiment.EqualBudget(r.AttendedMean));
        Assert.Equal(10, result.ToDataFrame().Columns.Count);
        Assert.True(result.Probe.Recycled[0] >= result.Probe.SinkWindow[0] - 1e-12, "at t₀ the top-K holds at least the mass of a sink window");
    }

    [Fact]
    public void LayerFormMatchesNaiveAndMarksTheAttendedSets()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(1);
        var (q, k, v) = (torch.randn(1, 9, 2, 3, dtype: torch.float64), torch.randn(1, 9, 2, 3, dtype: torch.float64),
            torch.randn(1, 9, 2, 3, dtype: torch.float64));
        var (outputs, attended, trace) = RecycledDecode.Layer(q, k, v, topK: 2, stride: 3);
        Assert.True(outputs.allclose(RecycledAttentionNaive.Decode(q, k, v, 2, 3), rtol: 1e-10, atol: 1e-12));
        for (int t = 0; t < 9; t++) Assert.Equal(trace[t].AttendedTokens[0], (long)attended[0, 0, t].sum().item<double>());
        Assert.Equal(0.0, attended.triu(1).abs().sum().item<double>());            // causal
        Assert.Throws<ArgumentException>("q", () => RecycledDecode.Layer(q.narrow(1, 0, 3), k, v, 2, 3));
        Assert.Throws<ArgumentException>("TopKs", () => (RecycledExperiment.Config.Smoke with { TopKs = new[] { 1 } }).Validate());
        Assert.Throws<ArgumentException>("TopKs", () => (RecycledExperiment.Config.Smoke with { TopKs = new[] { 10 } }).Validate());     // no K = n/8
        Assert.Throws<ArgumentException>("Strides", () => (RecycledExperiment.Config.Smoke with { Strides = new[] { 2 } }).Validate()); // no S = 4
        Assert.Equal("smoke", RecycledExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", RecycledExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal(13, RecycledExperiment.EqualBudget(12.27));
        Assert.Equal(12, RecycledExperiment.EqualBudget(12.0));
    }

    static RecycledResult Good()
    {
        var config = RecycledExperiment.Config.Smoke;
        var exact = new RecycledExactness(new ErrorStats(1e-16, 1e-16, 10), 2e-6, 3e-6, 23, 0);
        PolicyRow Row(string p, int k, int s, double acc, double keys, double ms = 1) => new(p, k, s, acc, acc, keys, 0.2, 100, ms);
        var rows = new List<PolicyRow>
        {
            Row(RecycledExperiment.FullName, 0, 0, 0.97, 36, ms: 2),
            Row(RecycledExperiment.Recycled, 5, 2, 0.67, 20),
            Row(RecycledExperiment.Recycled, 5, 4, 0.37, 12.3),
            Row(RecycledExperiment.StreamingName, 13, 0, 0.08, 13),
            Row(RecycledExperiment.H2OName, 13, 0, 0.10, 13),
            Row(RecycledExperiment.OracleName, 13, 0, 0.90, 13),
        };
        var probe = new MassProbe(5, 4, 29, new[] { 0.9, 0.5 }, new[] { 0.6, 0.4 }, new[] { new double[3] }, new[] { new double[3] }, 1, 0);
        return new RecycledResult(config, exact, rows, probe, 41, TimeSpan.FromSeconds(1));
    }

    static RecycledResult WithRow(RecycledResult r, string policy, int k, int s, Func<PolicyRow, PolicyRow> change) =>
        r with { Rows = r.Rows.Select(x => x.Policy == policy && x.TopK == k && x.Stride == s ? change(x) : x).ToList() };

    [Fact]
    public void ClaimsFollowTheMeasurements()
    {
        var good = Good();
        var claims = good.Claims();
        Assert.Empty(claims.Failures);
        Assert.Equal(13, good.ClaimBudget);
        Assert.Equal(ClaimStatus.DoesNotHold, claims["near-full"].Status);                        // 67 % vs 97 %: honest, not asserted
        Assert.Equal(ClaimStatus.Holds, claims["ms-per-token"].Status);
        Assert.NotNull(claims["beats-streamingllm-equal-keys"].Deviation);

        // StreamingLLM at the equal budget above half the recycled accuracy: the asserted claim fails and Check names it
        var window = WithRow(good, RecycledExperiment.StreamingName, 13, 0, r => r with { TokenAccuracy = 0.2 });
        var e = Assert.Throws<ClaimCheckException>(() => window.Claims().Check());
        Assert.Contains("beats-streamingllm-equal-keys", e.Message);
        Assert.Contains(WithRow(good, RecycledExperiment.H2OName, 13, 0, r => r with { TokenAccuracy = 0.4 }).Claims().Failures,
            f => f.Id == "beats-h2o-equal-keys");
        // a recycled row reading more keys moves the baselines' budget: without rows at that budget the claim cannot be computed
        Assert.ThrowsAny<ArgumentException>(() => WithRow(good, RecycledExperiment.Recycled, 5, 4, r => r with { AttendedMean = 14.5 }).Claims());
        // the gap to full closes: near-full starts holding (never a failure either way)
        var close = WithRow(good, RecycledExperiment.Recycled, 5, 2, r => r with { TokenAccuracy = 0.9 });
        Assert.Equal(ClaimStatus.Holds, close.Claims()["near-full"].Status);
        // exactness: the naive twin, set sizes, the reduces-to-full identities (NaN fails) and the mass order
        Assert.Contains((good with { Exactness = good.Exactness with { NaiveTwin = new ErrorStats(1e-9, 1e-9, 10) } }).Claims().Failures,
            f => f.Id == "fast-equals-naive");
        Assert.Contains((good with { Exactness = good.Exactness with { SetSizeErrors = 1 } }).Claims().Failures, f => f.Id == "recycled-set-size");
        Assert.Contains((good with { Exactness = good.Exactness with { StrideOneMaxAbs = double.NaN } }).Claims().Failures,
            f => f.Id == "full-budget-equals-full");
        Assert.Contains((good with { Probe = good.Probe with { SinkWindow = new[] { 0.95, 0.4 } } }).Claims().Failures, f => f.Id == "topk-mass-dominates");
        // the timing is reported: slower than full changes its status but never fails the check
        var slow = WithRow(good, RecycledExperiment.Recycled, 5, 4, r => r with { MsPerToken = 5 });
        Assert.Equal(ClaimStatus.DoesNotHold, slow.Claims()["ms-per-token"].Status);
        Assert.Empty(slow.Claims().Failures);
    }
}
