using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Papers.SynapticResonance;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// P40 Synaptic Resonance ([ours] operationalisation): the resonance memory's three engine forms against the token-loop twin over
/// the shared grid (read, r and the gradients of x, q, k, v, a, b, γ, λ, η), the whole layer against its twin with parameter
/// gradients, the spec's §6 checks (η = 0 = backbone, causality, r ∈ (0, 1)), bad input, NaN propagation, claims that flip, and
/// the smoke run.
/// </summary>
public class SynapticResonanceTests(ITestOutputHelper output)
{
    const int Features = 5;

    /// <summary>x [B, T, 5], q, k [B, T, H, D], v [B, T, H, Dv], a, b, γ̃ (0-dim), λ̃ [H], η̃ [H] (squashed inside the forms).</summary>
    static Tensor[] Inputs(Shape s, ScalarType dtype, Generator g) =>
    [
        torch.randn(s.B, s.T, Features, generator: g, dtype: float64).to(dtype),
        torch.randn(s.B, s.T, s.H, s.D, generator: g, dtype: float64).to(dtype),
        torch.randn(s.B, s.T, s.H, s.D, generator: g, dtype: float64).to(dtype),
        torch.randn(s.B, s.T, s.H, s.Dv, generator: g, dtype: float64).to(dtype),
        (torch.randn(1, generator: g, dtype: float64)[0] + 2).to(dtype),
        torch.randn(1, generator: g, dtype: float64)[0].to(dtype),
        torch.randn(1, generator: g, dtype: float64)[0].to(dtype),
        (torch.randn(s.H, generator: g, dtype: float64) + 1).to(dtype),
        torch.randn(s.H, generator: g, dtype: float64).to(dtype),
    ];

    static FormOutput Fast(Tensor[] x, LinearForm form, int chunk)
    {
        var r = SynapticResonanceOps.Resonance(x[0], x[4], x[5], torch.sigmoid(x[6]));
        return new FormOutput(SynapticResonanceOps.Read(x[1], x[2], x[3], r, torch.nn.functional.logsigmoid(x[7]), torch.sigmoid(x[8]), form, chunk), r);
    }

    static FormOutput Naive(Tensor[] x)
    {
        var (m, r, _, _) = SynapticResonanceNaive.Forward(x[0], x[1], x[2], x[3], x[4], x[5], torch.sigmoid(x[6]),
            torch.nn.functional.logsigmoid(x[7]), torch.sigmoid(x[8]));
        return new FormOutput(m, r);
    }

    [Theory]
    [MemberData(nameof(Conformance.Shapes), MemberType = typeof(Conformance))]
    public void EngineFormsConformToTheTokenLoop(Shape shape) =>
        Conformance.Check(shape, Inputs, new Form("token loop over S", Naive),
        [
            new Form("parallel", x => Fast(x, LinearForm.Parallel, shape.Chunk)),
            new Form("recurrent", x => Fast(x, LinearForm.Recurrent, shape.Chunk)),
            new Form("chunked", x => Fast(x, LinearForm.Chunked, shape.Chunk)),
        ], tol32: 1e-4, rms32: true);

    [Theory]
    [InlineData(1, LinearForm.Parallel)]
    [InlineData(7, LinearForm.Chunked)]
    [InlineData(13, LinearForm.Recurrent)]
    public void LayerAgreesWithItsTwinWithParameterGradients(int t, LinearForm form)
    {
        torch.manual_seed(3);
        using var layer = new SynapticResonanceLayer(12, 3, 4) { Form = form, ChunkSize = 5 };
        layer.to(float64);
        using var x = torch.randn(2, t, 12, dtype: float64);
        var agree = FormAgreement.Of(layer, () => layer.call(x), () => SynapticResonanceNaive.Layer(layer, x));
        Assert.True(agree.Output <= 1e-10 && agree.Gradients <= 1e-10, agree.ToString());
    }

    [Fact]
    public void ExactnessPhaseHolds()
    {
        var e = SynapticResonanceExperiment.Exactness(torch.CPU);
        Assert.True(e.TwinOutput <= 1e-10, $"output {e.TwinOutput}");
        Assert.True(e.TwinGradients <= 1e-10, $"grads {e.TwinGradients}");
        Assert.Equal(0.0, e.SilencedGap);
        Assert.Equal(0.0, e.CausalityLeak);
        Assert.True(e.CausalityReach > 0);
        Assert.InRange(e.MinResonance, double.Epsilon, 1);
        Assert.True(e.MaxResonance < 1);
    }

    [Fact]
    public void MemoryChangesTheOutputAndSilenceRemovesIt()
    {
        torch.manual_seed(1);
        using var on = new SynapticResonanceLayer(8, 2, 2);
        using var off = new SynapticResonanceLayer(8, 2, 2, resonance: false);
        using (torch.no_grad())
        {
            off.Qkv.weight!.copy_(on.Qkv.weight!); off.Qkv.bias!.copy_(on.Qkv.bias!);
            off.Proj.weight!.copy_(on.Proj.weight!); off.Proj.bias!.copy_(on.Proj.bias!);
        }
        using var x = torch.randn(1, 9, 8);
        Assert.True((on.call(x) - off.call(x)).abs().max().item<float>() > 1e-4);
        on.Silence();
        Assert.Equal(0f, (on.call(x) - off.call(x)).abs().max().item<float>());
    }

    [Fact]
    public void TraceIsTheDecayedSumOfThePast()
    {
        using var x = torch.tensor(new double[] { 1, 2, 4 }).view(1, 3, 1);
        var c = SynapticResonanceOps.PreviousTrace(x, torch.tensor(0.5)).flatten().data<double>().ToArray();
        Assert.Equal(new[] { 0.0, 0.5, 0.5 * 0.5 + 0.5 * 2 }, c);
    }

    [Fact]
    public void NaNInGivesNaNOut()
    {
        torch.manual_seed(0);
        using var layer = new SynapticResonanceLayer(8, 2, 3);
        using var x = torch.randn(1, 6, 8);
        x[0, 2, 1] = torch.tensor(float.NaN);
        using var y = layer.call(x);
        Assert.True(y[0, 2].isnan().any().item<bool>());
        var g = new Generator(1);
        var q = torch.randn(1, 4, 2, 3, generator: g);
        q[0, 1, 0, 0] = torch.tensor(float.NaN);
        var m = SynapticResonanceOps.Read(q, q.nan_to_num(), torch.randn(1, 4, 2, 3, generator: g),
            torch.full(1, 4, 0.5f), torch.full(2, -0.1f), torch.ones(2));
        Assert.True(m[0, 1].isnan().any().item<bool>());
    }

    [Fact]
    public void BadArgumentsNameTheArgument()
    {
        var q = torch.randn(1, 4, 2, 3);
        var r = torch.ones(1, 4);
        Assert.Equal("windowKeys", Assert.ThrowsAny<ArgumentException>(() => new SynapticResonanceLayer(8, 2, 0)).ParamName);
        Assert.Equal("r", Assert.ThrowsAny<ArgumentException>(() => SynapticResonanceOps.Read(q, q, q, torch.ones(1, 5), torch.zeros(2), torch.ones(2)))
            .ParamName);
        Assert.Equal("logLambda", Assert.ThrowsAny<ArgumentException>(() => SynapticResonanceOps.Read(q, q, q, r, torch.zeros(3), torch.ones(2))).ParamName);
        Assert.Equal("eta", Assert.ThrowsAny<ArgumentException>(() => SynapticResonanceOps.Read(q, q, q, r, torch.zeros(2), torch.ones(1, 2))).ParamName);
        Assert.Equal("x", Assert.ThrowsAny<ArgumentException>(() => SynapticResonanceOps.PreviousTrace(q, torch.tensor(0.5))).ParamName);
        Assert.Equal("name", Assert.ThrowsAny<ArgumentException>(() => SynapticResonanceExperiment.Build("other", SynapticResonanceExperiment.Config.Smoke, 0))
            .ParamName);
        using var batch = new MqarTask(VocabSize: 16, Length: 16, Pairs: 2).Generate(1, 0);
        Assert.Equal("p", Assert.ThrowsAny<ArgumentException>(() => SynapticResonanceExperiment.Corrupt(batch, 1.5, 16, 0)).ParamName);
    }

    [Fact]
    public void CorruptionSparesTheQueriesAndHitsAboutP()
    {
        using var batch = new MqarTask(VocabSize: 64, Length: 64, Pairs: 8).Generate(64, 0);
        using var noisy = SynapticResonanceExperiment.Corrupt(batch, 0.3, 64, 1);
        var queries = batch.Labels.ne(TokenBatch.Ignore);
        Assert.True(noisy.masked_select(queries).eq(batch.Tokens.masked_select(queries)).all().item<bool>());
        double changed = noisy.ne(batch.Tokens).masked_select(queries.logical_not()).to(float64).mean().item<double>();
        Assert.InRange(changed, 0.25, 0.32);                                     // 0.3 × (63/64) of the non-query tokens
    }

    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", SynapticResonanceExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", SynapticResonanceExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (SynapticResonanceExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
    }

    static SynapticResonanceResult Hand(double beyondRes, double beyondBb, double within, double pplRes, double msRes, ResonanceExactness? exact = null)
    {
        var config = SynapticResonanceExperiment.Config.Smoke with { Size = "custom" };
        var rows = new[]
        {
            new NoiseRow(SynapticResonanceExperiment.BackboneName, 0.1, 10, 0.5, within, beyondBb, 20),
            new NoiseRow(SynapticResonanceExperiment.ResonanceName, 0.1, pplRes, 0.5, within, beyondRes, 20),
        };
        var costs = new[]
        {
            new CostRow(SynapticResonanceExperiment.BackboneName, 1000, 10, 5, 100),
                new CostRow(SynapticResonanceExperiment.ResonanceName, 1010, msRes, 6, 200),
        };
        exact ??= new ResonanceExactness(0, 0, 0, 0, 1, 0.2, 0.8, "hand");
        return new SynapticResonanceResult(config, exact, rows, costs, new Dictionary<string, IReadOnlyList<double>>(),
            new Trace([new double[] { 0.5 }], [1.0], [], 16), 1, new Dictionary<string, double>());
    }

    [Fact]
    public void ClaimsFlipWithTheirMeasurements()
    {
        var good = Hand(0.8, 0.1, 0.9, 5, 12).Claims();
        Assert.Empty(good.Failures);
        Assert.Equal(ClaimStatus.Holds, good["beyond-window-recall"].Status);
        Assert.True(good["beyond-window-recall"].Asserted);
        Assert.Equal(ClaimStatus.Holds, good["noise-robustness"].Status);
        Assert.Equal(ClaimStatus.Holds, good["time-per-token"].Status);

        var flat = Hand(0.2, 0.1, 0.9, 15, 20).Claims();
        Assert.Equal(ClaimStatus.DoesNotHold, flat["beyond-window-recall"].Status);
        Assert.False(flat["beyond-window-recall"].Asserted);
        Assert.Equal(ClaimStatus.DoesNotHold, flat["noise-robustness"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, flat["time-per-token"].Status);
        Assert.Empty(flat.Failures);

        Assert.Equal(ClaimStatus.NotShown, Hand(0.8, 0.1, 0.2, 5, 12).Claims()["beyond-window-recall"].Status);

        var e = new ResonanceExactness(0, 0, 0, 0, 1, 0.2, 0.8, "hand");
        Assert.Contains(Hand(0.8, 0.1, 0.9, 5, 12, e with { TwinGradients = 1e-8 }).Claims().Failures, c => c.Id == "forms-equal-naive");
        Assert.Contains(Hand(0.8, 0.1, 0.9, 5, 12, e with { SilencedGap = 1e-15 }).Claims().Failures, c => c.Id == "eta-zero-is-backbone");
        Assert.Contains(Hand(0.8, 0.1, 0.9, 5, 12, e with { CausalityLeak = 1e-12 }).Claims().Failures, c => c.Id == "causality");
        Assert.Contains(Hand(0.8, 0.1, 0.9, 5, 12, e with { MaxResonance = 1 }).Claims().Failures, c => c.Id == "resonance-in-unit-interval");
    }

    [Fact]
    public void SmokeRunReportsItsClaims()
    {
        var result = SynapticResonanceExperiment.Run(SynapticResonanceExperiment.Config.Smoke, torch.CPU, new Progress(output));
        var claims = result.Claims();
        foreach (var c in claims) output.WriteLine($"{c.Id}: {ClaimRecord.StatusText(c.Status)} — {c.Ours}");
        foreach (var s in claims.Observations) output.WriteLine(s);
        Assert.Empty(claims.Failures);
        Assert.Equal(SynapticResonanceExperiment.Paper.Number, claims.Paper);
        Assert.Equal(2 * result.Config.NoiseRates.Length, result.Rows.Count);
        Assert.All(result.Rows, r => Assert.InRange(r.Accuracy, 0, 1));
        Assert.Equal(2, result.Costs.Count);
        Assert.Equal(result.Config.Layers, result.Trace.Resonance.Count);
    }

    sealed class Progress(ITestOutputHelper output) : IProgress<string>
    {
        public void Report(string value) => output.WriteLine(value);
    }
}
