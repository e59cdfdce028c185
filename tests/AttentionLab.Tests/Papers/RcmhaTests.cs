using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Papers.Rcmha;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// P24 RCMHA: the relative-score forms (shift, gather) against the (i, j) loop over the awkward-shape grid, the four mixers against
/// their naive twin, exact causal masking, the causality probe, the reduction to MHA, decoding, bad input, the claims.
/// </summary>
public class RcmhaTests(ITestOutputHelper output)
{
    /// <summary>Inputs q, k [B, T, H, D], u, v [H, D], p [T + 1, H, D] (one spare distance) from the grid's shape.</summary>
    static Tensor[] ScoreInputs(Shape s, ScalarType dtype, Generator gen)
    {
        Tensor R(params long[] shape) => torch.randn(shape, generator: gen, dtype: ScalarType.Float64).to(dtype);
        return [R(s.B, s.T, s.H, s.D), R(s.B, s.T, s.H, s.D), R(s.H, s.D), R(s.H, s.D), R(s.T + 1, s.H, s.D)];
    }

    static FormOutput Visible(Tensor s)
    {
        long t = s.size(-1);
        return new FormOutput(s.masked_fill(torch.ones(t, t, dtype: ScalarType.Bool, device: s.device).triu(1), 0.0));
    }

    [Theory]
    [MemberData(nameof(Conformance.Shapes), MemberType = typeof(Conformance))]
    public void ShiftAndGatherEqualTheLoop(Shape shape) =>
        Conformance.Check(shape, ScoreInputs,
            new Form("loop", x => Visible(RelativeScoresNaive.Scores(x[0], x[1], x[2], x[3], x[4]))),
            [
                new Form("shift", x => Visible(RelativeScores.Scores(x[0], x[1], x[2], x[3], x[4], RelShiftMode.Shift))),
                new Form("gather", x => Visible(RelativeScores.Scores(x[0], x[1], x[2], x[3], x[4], RelShiftMode.Gather))),
            ]);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    [InlineData(16)]
    public void EveryFormMasksTheFutureExactly(int t)
    {
        foreach (var mode in new[] { RelShiftMode.Shift, RelShiftMode.Gather })
        {
            var (gap, mask) = RcmhaChecks.ScoreGap(mode, 2, t, 3, 4, seed: t);
            Assert.True(mask, $"{mode} T {t}: an entry j > i is not −∞, or j ≤ i is not finite");
            Assert.True(gap <= 1e-10, $"{mode} T {t}: max |Δ| {gap}");
        }
    }

    [Fact]
    public void ShiftPlacesEachDistanceByHand()
    {
        // q = 1, k = 0, u = v = 0, D = 1: s_ij = p_{i−j}. With p_δ = 10 + δ the visible scores are 10 + i − j.
        using var scope = NewDisposeScope();
        const int T = 4;
        var q = torch.ones(1, T, 1, 1, dtype: float64);
        var k = torch.zeros(1, T, 1, 1, dtype: float64);
        var zero = torch.zeros(1, 1, dtype: float64);
        var p = (torch.arange(T, dtype: float64) + 10).view(T, 1, 1);
        var s = RelativeScores.Scores(q, k, zero, zero, p, RelShiftMode.Shift)[0, 0];
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++)
            {
                double value = s[i, j].item<double>();
                if (j > i) Assert.True(double.IsNegativeInfinity(value), $"({i}, {j}) = {value}");
                else Assert.Equal(10 + i - j, value, 12);
            }
    }

    [Fact]
    public void ShiftOfAMatrixReadsColumnTMinusOneMinusDistance()
    {
        using var x = torch.arange(9, dtype: float64).view(3, 3);                      // x[i, m] = 3i + m
        using var y = RelativeScores.Shift(x);
        for (int i = 0; i < 3; i++)
            for (int j = 0; j <= i; j++) Assert.Equal(3 * i + (2 - (i - j)), y[i, j].item<double>());
    }

    public static IEnumerable<object[]> MixerGrid() =>
        Conformance.Grid.Where(s => s.T <= 33).SelectMany(s => RcmhaVariant.All.Select(v => new object[] { s, v.Name }));

    [Theory]
    [MemberData(nameof(MixerGrid))]
    public void MixersEqualTheirNaiveTwinInFloat64(Shape shape, string variant)
    {
        var v = RcmhaVariant.All.Single(x => x.Name == variant);
        foreach (var mode in new[] { RelShiftMode.Shift, RelShiftMode.Gather })
        {
            using var scope = NewDisposeScope();
            using var mixer = RcmhaChecks.Random(v, shape.H * shape.D, shape.H, kernel: shape.Chunk % 5 + 1, seed: shape.T);
            mixer.Mode = mode;
            var gen = new Generator((ulong)shape.T + 3);
            var x = torch.randn(new long[] { shape.B, shape.T, shape.H * shape.D }, generator: gen, dtype: float64).requires_grad_();
            double gap = RcmhaChecks.TwinGap(mixer, x, gen);
            Assert.True(gap <= 1e-10, $"{variant} {mode} {shape}: max |Δ| {gap}");
        }
    }

    [Fact]
    public void TheConvolutionLoopEqualsTheLibraryConvolution()
    {
        torch.manual_seed(2);
        using var conv = new CausalDepthwiseConv(6, 4);
        conv.to(float64);
        using var u = torch.randn(2, 5, 2, 3, dtype: float64);
        using var fast = RcmhaAttention.ConvHeads(conv, u);
        using var naive = RcmhaNaive.Conv(conv, u);
        Assert.True((fast - naive).abs().max().item<double>() <= 1e-12);
    }

    [Fact]
    public void FutureInputsDoNotChangePastOutputs()
    {
        var (past, future) = RcmhaChecks.Causality(torch.CPU);
        Assert.Equal(0.0, past);
        Assert.True(future > 0);
    }

    [Fact]
    public void DeltaKernelAndZeroRelativeTermsGiveMha() => Assert.True(RcmhaChecks.ReducesToMha(torch.CPU) <= 1e-12);

    [Fact]
    public void ConvAndRelativeOffIsTheLibrarysMha()
    {
        torch.manual_seed(8);
        using var mine = new RcmhaAttention(12, 3, RcmhaVariant.Mha);
        using var mha = new CausalSelfAttention(12, 3);
        using (torch.no_grad())
        {
            mha.Qkv.weight!.copy_(mine.Qkv.weight!); mha.Qkv.bias!.copy_(mine.Qkv.bias!);
            mha.Proj.weight!.copy_(mine.Proj.weight!); mha.Proj.bias!.copy_(mine.Proj.bias!);
        }
        using var x = torch.randn(2, 6, 12);
        Assert.True((mine.call(x) - mha.call(x)).abs().max().item<float>() <= 1e-6);
    }

    [Theory]
    [InlineData("MHA")]
    [InlineData("MDHA")]
    [InlineData("RMHA")]
    [InlineData("RCMHA")]
    public void StepReproducesForward(string variant) =>
        Assert.True(RcmhaChecks.StepVsForward(RcmhaVariant.All.Single(v => v.Name == variant), torch.CPU) <= 1e-10);

    [Fact]
    public void PatternHookSeesRowsThatSumToOneAndZeroFuture()
    {
        torch.manual_seed(4);
        using var mixer = new RcmhaAttention(16, 4, RcmhaVariant.Rcmha);
        using var x = torch.randn(2, 9, 16);
        Tensor? seen = null;
        var hook = mixer.named_modules().First(m => m.name == "hook_pattern").module as AttentionLab.Interp.HookPoint;
        using (hook!.AddHook((p, _) => { seen = p.detach().clone().DetachFromDisposeScope(); return null; }))
            mixer.call(x).Dispose();
        Assert.NotNull(seen);
        Assert.Equal(new long[] { 2, 4, 9, 9 }, seen!.shape);
        Assert.True((seen.sum(-1) - 1).abs().max().item<float>() <= 1e-5);
        Assert.Equal(0f, seen.triu(1).abs().max().item<float>());
        seen.Dispose();
    }

    [Fact]
    public void BiasProfileHasOneRowPerHead()
    {
        torch.manual_seed(5);
        using var mixer = new RcmhaAttention(16, 4, RcmhaVariant.Rmha);
        using var profile = mixer.BiasProfile(10);
        Assert.Equal(new long[] { 4, 10 }, profile.shape);
        Assert.Throws<InvalidOperationException>(() => new RcmhaAttention(16, 4, RcmhaVariant.Mdha).BiasProfile(3));
    }

    [Fact]
    public void BadInputNamesItsArgument()
    {
        using var q = torch.randn(1, 4, 2, 3);
        using var k5 = torch.randn(1, 5, 2, 3);
        using var uv = torch.zeros(2, 3);
        using var wrongU = torch.zeros(3, 3);
        using var p = torch.randn(4, 2, 3);
        using var shortP = torch.randn(2, 2, 3);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => RelativeScores.Scores(q, k5, uv, uv, p)).ParamName);
        Assert.Equal("u", Assert.Throws<ArgumentException>(() => RelativeScores.Scores(q, q, wrongU, uv, p)).ParamName);
        Assert.Equal("p", Assert.Throws<ArgumentException>(() => RelativeScores.Scores(q, q, uv, uv, shortP)).ParamName);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => RelativeScores.Shift(torch.zeros(2, 3))).ParamName);
        Assert.Equal("kernel", Assert.ThrowsAny<ArgumentException>(() => new RcmhaAttention(8, 2, true, true, kernel: 0)).ParamName);
        using var mixer = new RcmhaAttention(8, 2, RcmhaVariant.Rcmha);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => mixer.call(torch.randn(1, 3, 9))).ParamName);
    }

    [Fact]
    public void NaNInGivesNaNOut()
    {
        torch.manual_seed(6);
        foreach (var variant in RcmhaVariant.All)
        {
            using var mixer = new RcmhaAttention(12, 3, variant);
            using var x = torch.randn(1, 6, 12);
            x[0, 2, 0] = torch.tensor(float.NaN);
            using var y = mixer.call(x);
            Assert.True(y[0, 2].isnan().all().item<bool>(), $"{variant.Name}: the NaN token's output");
        }
    }

    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", RcmhaExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", RcmhaExperiment.Config.For(RunSize.Full).Size);
        Assert.True(RcmhaExperiment.Config.Smoke.FromCheckpoints);
        Assert.False(RcmhaExperiment.Config.Full.FromCheckpoints);
    }

    [Fact]
    public void ExactnessPhaseHolds()
    {
        var ex = RcmhaExperiment.Exactness(torch.CPU);
        output.WriteLine(ex.ToString());
        Assert.True(ex.ShiftGap <= 1e-10 && ex.GatherGap <= 1e-10 && ex.MixerGap <= 1e-10 && ex.StepVsForward <= 1e-10, ex.ToString());
        Assert.True(ex.MaskExact);
        Assert.Equal(0.0, ex.CausalPast);
        Assert.True(ex.ReducesToMha <= 1e-6);
    }

    [Fact]
    public void SmokeRunHoldsItsClaims()
    {
        var config = RcmhaExperiment.Config.Smoke;
        var result = RcmhaExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine(string.Join(", ", result.PhaseSeconds.Select(p => $"{p.Key} {p.Value:F1} s")));
        var claims = result.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        Assert.Empty(claims.Failures);
        Assert.Equal(RcmhaExperiment.Paper.Number, claims.Paper);
        Assert.Equal(4, result.Runs.Count);
        Assert.Equal(4 * config.EvalLengths.Length, result.Evals.Count);
        Assert.All(result.Runs, r => Assert.False(r.TrainedHere, $"{r.Variant}: {r.Source}"));   // the shipped checkpoints load
        Assert.NotNull(result.Profile);
        Assert.Equal(3, result.Kernels.Count);
        Assert.All(result.Evals.Where(e => e.Length == config.SeqLen), e => Assert.InRange(e.Accuracy, 0.3, 1.0));   // trained: far above 1/76
        Assert.All(result.Evals, e => Assert.InRange(e.Accuracy, 0.1, 1.0));
    }

    /// <summary>The four shipped files are in the manifest with the smoke config and the recipe's command, and data/README.md lists them.</summary>
    [Fact]
    public void ShippedCheckpointsMatchTheSmokeConfig()
    {
        var store = AttentionLab.Train.CheckpointStore.Default();
        string readme = File.ReadAllText(Path.Combine(RepositoryData.Folder(), "README.md"));
        foreach (var variant in RcmhaVariant.All)
        {
            var entry = store.Find(RcmhaCheckpoint.Name(variant));
            Assert.NotNull(entry);
            Assert.Contains($"`{entry!.Sha256}`", readme);
            Assert.Contains($"`{entry.Command}`", readme);
            Assert.Equal(RcmhaExperiment.Config.CheckpointSteps, entry.Steps);
            Assert.Equal(RcmhaCheckpoint.Command(variant, RcmhaExperiment.Config.CheckpointSteps), entry.Command);
            using var loaded = RcmhaCheckpoint.Load(variant, RcmhaExperiment.Config.Smoke).Model;
            Assert.Equal(variant.ModelPositions, loaded.Config.Positions);
        }
        Assert.Throws<ArgumentException>(() => RcmhaCheckpoint.Load(RcmhaVariant.Rcmha, RcmhaExperiment.Config.Smoke with { Kernel = 4 }));
    }

    /// <summary>A config the checkpoints were not made for trains briefly here, says so, and asserts nothing it cannot decide.</summary>
    [Fact]
    public void AMismatchedConfigFallsBackToBriefTraining()
    {
        var config = RcmhaExperiment.Config.Smoke with
        {
            SeqLen = 16, EvalLengths = [16, 32], BatchSize = 2, EvalWindows = 2, EvalBatch = 2, FallbackSteps = 2, TimingBatch = 2,
            TimingRepeats = 1, MemoryLengths = [16],
        };
        var result = RcmhaExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        Assert.All(result.Runs, r => Assert.True(r.TrainedHere && r.Source.Contains("fallback"), r.Source));
        Assert.All(result.Runs, r => Assert.Equal(2, r.TrainLoss.Count));
        var claims = result.Claims();
        Assert.Empty(claims.Failures);
        Assert.False(claims["beyond-train-length"].Asserted);
    }

    static RcmhaResult HandMade(double rcAtT, double rcAt2T, double shiftGap = 1e-15, bool fallback = false, double rcPeak = 10)
    {
        var config = RcmhaExperiment.Config.Smoke;
        var ex = new RcmhaExactness(shiftGap, 1e-15, true, 1e-15, 0, 0.5, 1e-16, 1e-16);
        var runs = RcmhaVariant.All.Select(v => new RcmhaRun(v.Name, 100, fallback ? "trained here" : "checkpoint", fallback, [], null,
            v == RcmhaVariant.Mha ? 10 : 12, [new RcmhaPeak(512, v == RcmhaVariant.Rcmha ? rcPeak : 12, "test")])).ToList();
        var evals = new List<RcmhaEval>();
        foreach (var v in RcmhaVariant.All)
            foreach (int t in config.EvalLengths)
            {
                double acc = v == RcmhaVariant.Rcmha ? (t == 128 ? rcAtT : rcAt2T) : (t == 128 ? 0.5 : 0.4);
                evals.Add(new RcmhaEval(v.Name, t, t / 128.0, 2.0, acc));
            }
        return new RcmhaResult(config, ex, runs, evals, null, [], 1, new Dictionary<string, double>());
    }

    [Fact]
    public void EachClaimFollowsItsMeasurement()
    {
        var good = HandMade(0.51, 0.45).Claims();
        Assert.Empty(good.Failures);
        Assert.Equal(ClaimStatus.Holds, good["quality-at-train-length"].Status);
        Assert.Equal(ClaimStatus.Holds, good["beyond-train-length"].Status);
        Assert.Equal(ClaimStatus.Holds, good["clearest-beyond-length"].Status);
        Assert.Equal(ClaimStatus.Holds, good["ranking-at-longest"].Status);
        Assert.Equal(ClaimStatus.NotShown, good["memory-saving"].Status);
        Assert.Equal(ClaimStatus.Holds, good["step-time"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, HandMade(0.49, 0.45).Claims()["quality-at-train-length"].Status);
        var worse = HandMade(0.51, 0.39).Claims();
        Assert.Equal(ClaimStatus.DoesNotHold, worse["beyond-train-length"].Status);
        Assert.Contains(worse.Failures, r => r.Id == "beyond-train-length");
        Assert.Equal(ClaimStatus.DoesNotHold, worse["ranking-at-longest"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, HandMade(0.51, 0.401).Claims()["clearest-beyond-length"].Status);   // gap 0.001 at 2T < 0.01 at T
        Assert.Empty(HandMade(0.51, 0.39, fallback: true).Claims().Failures);                // a fallback run records, does not assert
        Assert.Equal(ClaimStatus.DoesNotHold, HandMade(0.51, 0.45, shiftGap: 1e-8).Claims()["shift-equals-loop"].Status);
        Assert.Contains(HandMade(0.51, 0.45, shiftGap: 1e-8).Claims().Failures, r => r.Id == "shift-equals-loop");
    }
}
