using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Papers.LightningAttention;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>The notebook's smoke run, once: its claims at seed 0 and the shape of everything the notebook plots.</summary>
public class LightningExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void SmokeRunHoldsItsClaimsAtSeed0()
    {
        var config = LightningExperiment.Config.Smoke;
        var result = LightningExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine(result.SummaryFrame().ToString());
        output.WriteLine(result.LmFrame().ToString());
        output.WriteLine(string.Join(", ", result.PhaseSeconds.Select(p => $"{p.Key} {p.Value:F1} s")));

        // the claims: every exactness check and asserted claim holds (their statuses are compared with
        // tests/expected-claims.csv by the notebook test)
        var claims = result.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        output.WriteLine(claims.Findings().ToString());
        Assert.Empty(claims.Failures);
        Assert.Equal("smoke", claims.Size);
        Assert.Equal(ClaimKind.Reported, claims["constant-speed"].Kind);
        Assert.Equal(ClaimKind.Reported, claims["beats-cumsum"].Kind);

        // exactness: 4 forms × blocks (tiled, chunked at 16/32/64; recurrent; cumsum) × 2 dtypes × (output, hT); 5 gradients each
        int forms = 2 * LightningExperiment.ExactnessBlocks.Count + 2;
        Assert.Equal(forms * 2 * 2, result.Exactness.Forms.Count);
        Assert.Equal(forms * 5, result.Exactness.Gradients.Count);

        // every method at every length it may run; the quadratic ones stop at MaxQuadraticLength; one sample per round;
        // the cumsum form in its own sweep beside the chunked form
        Assert.Empty(result.Of(LightningBenchmarks.CumsumLinear));
        Assert.Equal(config.CumsumLengths.Length, result.CumsumSpeed.Of(LightningBenchmarks.CumsumLinear).Count);
        Assert.Equal(config.CumsumLengths.Length, result.CumsumSpeed.Of(LightningBenchmarks.Chunked).Count);
        Assert.All(result.CumsumSpeed.Rows, r => Assert.Equal(config.CumsumTokensPerBatch, r.Batch * r.SeqLen));
        Assert.All(result.CumsumSpeed.Rows, r => Assert.Equal(config.CumsumRounds, r.Time.Repeats));
        foreach (var m in LightningExperiment.MainSweepMethods)
        {
            int expected = m is LightningBenchmarks.Reference or LightningBenchmarks.NaiveLinear
                ? config.Lengths.Count(n => n <= config.MaxQuadraticLength) : config.Lengths.Length;
            Assert.Equal(expected, result.Of(m).Count);
        }
        Assert.All(result.Speed.Rows, r => Assert.Equal(config.TokensPerBatch, r.Batch * r.SeqLen));
        Assert.All(result.Speed.Rows, r => Assert.Equal(config.SweepRounds, r.Time.Repeats));
        Assert.Equal(new[] { "n", "batch", "method", "ms", "best_ms", "rounds", "tokens_per_s", "ms_per_seq", "bytes" },
            result.ToDataFrame().Columns.Select(c => c.Name));
        // the LMs trained on the same batches; TNL decodes with a constant state, the softmax KV cache grows
        Assert.Equal(2, result.Lms.Count);
        Assert.All(result.Lms, l => Assert.Equal(config.LmSteps, l.TrainLoss.Count));
        var tnl = result.Decode.Where(d => d.Model == LightningExperiment.TnlName).ToList();
        var soft = result.Decode.Where(d => d.Model == LightningExperiment.SoftmaxName).ToList();
        Assert.Equal(config.StreamLength, tnl.Count);
        Assert.Single(tnl.Select(d => d.StateBytes).Distinct());
        Assert.True(soft[^1].StateBytes > soft[0].StateBytes);
    }

    /// <summary>A result built by hand: every claim holds; then each measurement crosses its criterion and the claim flips.</summary>
    [Fact]
    public void EachClaimFollowsItsMeasurement()
    {
        var good = Good();
        var claims = good.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        Assert.Empty(claims.Failures);
        Assert.All(claims, c => Assert.Equal(ClaimStatus.Holds, c.Status));

        var e = good.Exactness;
        FormError Worse(FormError f, double maxAbs, double rms) => f with { Error = new ErrorStats(maxAbs, rms, 10) };
        void Fails(LightningResult r, string id)
        {
            var c = r.Claims();
            Assert.Equal(ClaimStatus.DoesNotHold, c[id].Status);
            Assert.Contains(c.Failures, f => f.Id == id);
            Assert.Contains(id, Assert.Throws<ClaimCheckException>(() => c.Check()).Message);
        }
        Fails(good with { Exactness = e with { Forms = e.Forms.Select(
            f => f.DType == "float64" && f.Form == "cumsum" ? Worse(f, 2e-10, 1e-12) : f).ToList() } }, "forms-equal-masked-float64");
        Fails(good with { Exactness = e with { Gradients = e.Gradients.Select(f => f.What == "dlogλ" ? Worse(f, double.NaN, double.NaN) : f).ToList() } },
            "gradients-equal-masked-float64");
        Fails(good with { Exactness = e with { Forms = e.Forms.Select(f => f.DType == "float32" ? Worse(f, 1e-3, 2e-4) : f).ToList() } },
            "forms-equal-masked-float32");
        Fails(good with { Exactness = e with { SlopesH8 = LightningExactness.ExpectedSlopesH8.Select(a => a * 1.00001).ToArray() } }, "alibi-slopes-h8");
        Fails(good with { Exactness = e with { SlopesH8Float32 = LightningExactness.ExpectedSlopesH8.Reverse().ToArray() } }, "alibi-slopes-h8");
        Fails(good with { Exactness = e with { ZeroDecayMaxAbs = 1e-6 } }, "zero-decay-is-linear-attention");
        Fails(good with { Exactness = e with { StrongDecayFinite = false } }, "no-nan-strong-decay");
        Fails(good with { Decode = good.Decode.Select(d => d.Model == LightningExperiment.TnlName ? d with { StateBytes = 100 * d.T } : d).ToList() },
            "decode-constant-state");
        Fails(good with { StepVsForwardMaxAbs = double.NaN }, "decode-equals-forward");
        Fails(good with { Lms = new[] { good.Lms[0] with { ValidationLoss = 2.9 }, good.Lms[1] } }, "tnl-lm-on-par");       // 1.26 × softmax

        // the LM claim is asserted only with margin: just under the threshold it holds, unasserted, with a note
        var close = (good with { Lms = new[] { good.Lms[0] with { ValidationLoss = 2.3 * 1.14 }, good.Lms[1] } }).Claims()["tnl-lm-on-par"];
        Assert.Equal(ClaimStatus.Holds, close.Status);
        Assert.False(close.Asserted);
        Assert.NotNull(close.Note);

        // the timings are reported: crossing the criterion flips the status but never fails the check
        var flatSdpa = good with { Speed = new SpeedSweep(good.Speed.Rows.Select(
            r => r.Method == LightningBenchmarks.Sdpa ? Row(r.SeqLen, r.Method, 4096 / 1000.0) : r).ToList()) };
        Assert.Equal(ClaimStatus.DoesNotHold, flatSdpa.Claims()["constant-speed"].Status);
        Assert.Empty(flatSdpa.Claims().Failures);
        var uneven = good with { Speed = new SpeedSweep(good.Speed.Rows.Select(
            r => r.Method == LightningBenchmarks.Chunked && r.SeqLen == 2048 ? Row(2048, r.Method, 10.0) : r).ToList()) };
        Assert.Equal(ClaimStatus.DoesNotHold, uneven.Claims()["constant-speed"].Status);
        int n0 = good.Config.CumsumLengths[0], tokens = good.Config.CumsumTokensPerBatch;
        var slowTiles = good with { CumsumSpeed = new SpeedSweep(
            good.CumsumSpeed.Rows.Select(r => r.Method == LightningBenchmarks.Chunked && r.SeqLen == n0 ? Row(n0, r.Method, 500.0, tokens) : r).ToList()) };
        Assert.Equal(ClaimStatus.DoesNotHold, slowTiles.Claims()["beats-cumsum"].Status);
        Assert.Empty(slowTiles.Claims().Failures);
        Assert.NotNull(good.Claims()["beats-cumsum"].Deviation);                       // measured at a smaller budget than the main sweep
        // no cumsum rows: not shown, with the reason
        var noCumsum = good with { CumsumSpeed = new SpeedSweep(good.CumsumSpeed.Rows.Where(r => r.Method != LightningBenchmarks.CumsumLinear).ToList()) };
        Assert.Equal(ClaimStatus.NotShown, noCumsum.Claims()["beats-cumsum"].Status);
    }

    /// <summary>One row of <paramref name="tokens"/> tokens at n whose median time is <paramref name="ms"/>.</summary>
    static SpeedRow Row(int n, string method, double ms, int tokens = 4096) => new(n, tokens / n, method, new TimingStats(ms, ms, ms, 5), null);

    static LightningResult Good()
    {
        var config = LightningExperiment.Config.Smoke;
        var forms = new List<FormError>();
        var grads = new List<FormError>();
        foreach (var (form, block) in new[] { ("tiled", 16), ("chunked", 16), ("recurrent", 0), ("cumsum", 0) })
        {
            foreach (var what in new[] { "output", "hT" })
            {
                forms.Add(new FormError(form, block, "float64", what, new ErrorStats(1e-14, 1e-15, 10)));
                forms.Add(new FormError(form, block, "float32", what, new ErrorStats(1e-6, 1e-7, 10)));
            }
            foreach (var g in new[] { "dq", "dk", "dv", "dh0", "dlogλ" }) grads.Add(new FormError(form, block, "float64", g, new ErrorStats(1e-13, 1e-15, 10)));
        }
        var exact = new LightningExactness(forms, grads, LightningExactness.ExpectedSlopesH8, LightningExactness.ExpectedSlopesH8, 1e-15, true, 1e-6);
        // lightning: flat at 4 ms per 4096 tokens; SDPA: 1 ms at 256 growing to 8 ms at 2048; at the cumsum budget cumsum 300 ms, lightning 3 ms
        var rows = new List<SpeedRow>();
        foreach (var (n, i) in config.Lengths.Select((n, i) => (n, i)))
        {
            rows.Add(Row(n, LightningBenchmarks.Chunked, 4.0));
            rows.Add(Row(n, LightningBenchmarks.Sdpa, Math.Pow(2, i)));
        }
        int tokens = config.CumsumTokensPerBatch;
        var cumsum = config.CumsumLengths.SelectMany(n => new[] { Row(n, LightningBenchmarks.CumsumLinear, 300, tokens),
            Row(n, LightningBenchmarks.Chunked, 3, tokens) }).ToList();
        var decode = Enumerable.Range(1, 10).SelectMany(t => new[]
        {
            new StreamPoint(LightningExperiment.TnlName, t, 0.1, 8192), new StreamPoint(LightningExperiment.SoftmaxName, t, 0.1, 512L * t),
        }).ToList();
        var lms = new[]
        {
            new LmSummary(LightningExperiment.TnlName, 1, Array.Empty<double>(), 2.4, 1),
            new LmSummary(LightningExperiment.SoftmaxName, 1, Array.Empty<double>(), 2.3, 1),
        };
        return new LightningResult(config, exact, new SpeedSweep(rows), new SpeedSweep(cumsum), 2048, new TimingStats(1, 1, 1, 1), new TimingStats(1, 1, 1, 1),
            lms, 3.2, decode, 1e-6, 0, new Dictionary<string, double>());
    }
}
