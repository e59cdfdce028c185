using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Papers.Titans;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// P16 Titans: the memory mixer, MAG and MAL against the naive twin (outputs and every parameter gradient, float64, awkward
/// shapes), streaming against the recurrent forward, the persistent-token window, bad input, the smoke run on the
/// contract, and claims that flip when their measurement crosses the criterion.
/// </summary>
public class TitansTests
{
    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", TitansExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", TitansExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (TitansExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
    }

    [Fact]
    public void SmokeRunReportsItsClaims()
    {
        var config = TitansExperiment.Config.Smoke;
        var result = TitansExperiment.Run(config, torch.CPU);
        Assert.Equal(20, result.Exactness.Count);
        Assert.All(result.Exactness, e => Assert.True(e.Holds, $"{e.Check}: {e.MaxAbs}"));
        Assert.Equal(4 * 9, result.Mechanism.Count);
        Assert.Equal(new[] { "SWA", "MAG" }, result.Runs.Select(r => r.Model));
        Assert.All(result.Runs, r => Assert.Equal(config.Steps, r.Losses.Count));
        Assert.All(result.Runs, r => Assert.Equal(config.TestSequences * config.Pairs, r.Queries.Count));
        Assert.True(result.Run("MAG").StateBytes > result.Run("SWA").StateBytes);
        Assert.NotNull(result.Gates);
        Assert.Equal(config.SeqLen, result.Gates!.Theta.Length);
        Assert.All(result.Gates.Theta, th => Assert.InRange(th, 0, 0.5));
        Assert.Equal(result.Runs.Count, result.ToDataFrame().Rows.Count);
        var claims = result.Claims();
        Assert.Empty(claims.Failures);
        Assert.Equal(TitansExperiment.Paper.Number, claims.Paper);
        Assert.Equal("smoke", claims.Size);
        Assert.NotEmpty(claims.Observations);
    }

    public static TheoryData<string, int, int, int> Shapes => new()
    {
        { "linear", 1, 1, 3 }, { "linear", 2, 7, 3 }, { "linear", 1, 16, 16 }, { "linear", 2, 9, 1 },
        { "mlp", 1, 1, 3 }, { "mlp", 2, 7, 3 }, { "mlp", 1, 16, 16 }, { "mlp", 2, 9, 1 },
    };

    static TitansMemoryOptions Options(string memory, int chunk, TitansMemoryForm form = TitansMemoryForm.Chunked) => new()
    {
        Architecture = memory == "mlp" ? MemoryArchitecture.Mlp : MemoryArchitecture.Linear, ChunkSize = chunk, Form = form,
    };

    /// <summary>max |Δ| of outputs and of every parameter gradient between two forward functions of the same module.</summary>
    static (double Output, double Grads) Diff(nn.Module module, Func<Tensor> fast, Func<Tensor> naive)
    {
        var parameters = module.parameters().ToList();
        Tensor? w = null;
        (Tensor, Tensor[]) Run(Func<Tensor> f)
        {
            foreach (var p in parameters) p.grad?.zero_();
            var o = f();
            w ??= torch.randn(o.shape, dtype: o.dtype, generator: new Generator(3));
            (o * w).sum().backward();
            return (o.detach(), parameters.Select(p => p.grad is null ? torch.zeros_like(p) : p.grad.clone()).ToArray());
        }
        var (oa, ga) = Run(fast);
        var (ob, gb) = Run(naive);
        return ((oa - ob).abs().max().item<double>(), ga.Zip(gb).Max(p => (p.First - p.Second).abs().max().item<double>()));
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MemoryMixerFormsEqualTheNaiveTwin(string memory, int b, int t, int chunk)
    {
        using var scope = NewDisposeScope();
        foreach (var form in new[] { TitansMemoryForm.Chunked, TitansMemoryForm.Recurrent })
        {
            torch.manual_seed(1);
            using var mixer = new TitansMemory(10, 2, Options(memory, chunk, form));           // head width 5 (odd)
            mixer.to(float64);
            var x = torch.randn(b, t, 10, dtype: float64, generator: new Generator(2));
            var (o, g) = Diff(mixer, () => mixer.call(x), () => TitansNaive.Forward(mixer, x, form == TitansMemoryForm.Chunked ? chunk : 1));
            Assert.True(o <= 1e-10, $"{form} outputs differ by {o}");
            Assert.True(g <= 1e-10, $"{form} gradients differ by {g}");
        }
    }

    [Theory]
    [InlineData("mlp", 7, 3)]
    [InlineData("linear", 9, 4)]
    public void MagAndMalEqualTheirNaiveTwins(string memory, int t, int chunk)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(1);
        using var mag = new TitansMag(10, 2, 3, 2, Options(memory, chunk));
        using var mal = new TitansMal(10, 2, 3, 2, Options(memory, chunk));
        mag.to(float64); mal.to(float64);
        var x = torch.randn(2, t, 10, dtype: float64, generator: new Generator(4));
        var (o1, g1) = Diff(mag, () => mag.call(x), () => TitansNaive.Forward(mag, x, chunk));
        var (o2, g2) = Diff(mal, () => mal.call(x), () => TitansNaive.Forward(mal, x, chunk));
        Assert.True(Math.Max(o1, o2) <= 1e-10 && Math.Max(g1, g2) <= 1e-10, $"MAG {o1}/{g1}, MAL {o2}/{g2}");
    }

    [Fact]
    public void ChunkedFormDiffersFromTheRecurrenceAtChunkFour()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(1);
        using var mixer = new TitansMemory(10, 2, Options("mlp", 4));
        mixer.to(float64);
        var x = torch.randn(1, 9, 10, dtype: float64, generator: new Generator(5));
        using var noGrad = torch.no_grad();
        double gap = (mixer.call(x) - TitansNaive.Forward(mixer, x, 1)).abs().max().item<double>();
        Assert.True(gap > 1e-6, $"chunk 4 should differ from the token recurrence, got {gap}");   // the twin comparison can fail
    }

    [Theory]
    [InlineData("memory")]
    [InlineData("MAG")]
    [InlineData("MAL")]
    [InlineData("MAC")]
    public void StreamingReproducesTheRecurrentForward(string variant)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(1);
        var options = Options("mlp", 4, TitansMemoryForm.Recurrent);
        using nn.Module<Tensor, Tensor> mixer = variant == "memory" ? new TitansMemory(10, 2, options)
            : TitansExperiment.Variant(variant, 10, 2, variant == "MAC" ? 4 : 3, 2, options);      // MAC: segments 4, 4, 1
        mixer.to(float64);
        var x = torch.randn(2, 9, 10, dtype: float64, generator: new Generator(6));
        var streaming = (IStreamingMixer)mixer;
        using var state = streaming.NewState(2, ScalarType.Float64, torch.CPU);
        var steps = torch.stack(Enumerable.Range(0, 9).Select(i => streaming.Step(x.select(1, i), state)).ToArray(), 1);
        Assert.True((steps - mixer.call(x)).abs().max().item<double>() <= 1e-10);
        Assert.Equal(9, state.Position);
        Assert.True(state.Bytes > 0);
    }

    [Fact]
    public void PersistentTokensStayVisibleAndTheWindowHidesTheRest()
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(1);
        using var attn = new PersistentWindowAttention(8, 2, windowKeys: 3, persistentTokens: 2);
        var x = torch.randn(1, 8, 8, generator: new Generator(7));
        var bumped = x.clone();
        bumped.select(1, 0).add_(1.0);
        var delta = (attn.call(bumped) - attn.call(x)).abs().amax(new long[] { 0, 2 });        // per position
        Assert.True(delta[0].item<float>() > 0);
        Assert.True(delta.narrow(0, 3, 5).max().item<float>() == 0, "positions ≥ n must not see token 0");
        var before = attn.call(x);
        using (torch.no_grad()) attn.Persistent!.add_(1.0);
        Assert.True((attn.call(x) - before).abs().narrow(1, 3, 5).max().item<float>() > 0, "persistent tokens must stay visible beyond the window");
    }

    [Fact]
    public void ThetaZeroReadsTheStartMemory()
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var q = nn.functional.normalize(torch.randn(1, 5, 1, 4, dtype: float64, generator: new Generator(8)), 2, -1);
        var w = torch.randn(1, 1, 3, 4, dtype: float64, generator: new Generator(9));
        using var start = new MemoryState([w]);
        using var r = AssociativeMemory.Chunked(q, q, torch.randn(1, 5, 1, 3, dtype: float64), new MemoryGates(torch.zeros(1, 5, 1, dtype: float64)), start);
        using var read = AssociativeMemory.Read(start, q);
        Assert.True((r.Output - read).abs().max().item<double>() <= 1e-12);
    }

    [Fact]
    public void BadInputThrowsNamingTheArgument()
    {
        Assert.Equal("options", Assert.Throws<ArgumentException>(() => new TitansMemory(8, 2, new TitansMemoryOptions { MaxLr = 0 })).ParamName);
        Assert.Equal("options", Assert.Throws<ArgumentException>(() => new TitansMemory(8, 2, new TitansMemoryOptions { ChunkSize = 0 })).ParamName);
        Assert.Equal("persistentTokens", Assert.Throws<ArgumentException>(() => new PersistentWindowAttention(8, 2, 3, -1)).ParamName);
        Assert.Equal("model", Assert.Throws<ArgumentException>(() => TitansExperiment.Mixers("MAX", TitansExperiment.Config.Smoke)).ParamName);
        Assert.Equal("segment", Assert.Throws<ArgumentException>(() => new TitansMac(8, 2, 0, 2)).ParamName);
        Assert.Equal("name", Assert.Throws<ArgumentException>(() => TitansExperiment.Variant("SWA", 8, 2, 3, 2, new TitansMemoryOptions())).ParamName);
        using var mac = new TitansMac(8, 2, 3, 2);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => mac.call(torch.zeros(2, 8))).ParamName);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => mac.call(torch.zeros(1, 4, 6))).ParamName);
        using var mag = new TitansMag(8, 2, 3, 2);
        using var mal = new TitansMal(8, 2, 3, 2);
        using var macState = mac.NewState(1, ScalarType.Float32, torch.CPU);
        using var malState = mal.NewState(1, ScalarType.Float32, torch.CPU);
        using var otherMac = new TitansMac(8, 2, 3, 2);
        Assert.Equal("state", Assert.Throws<ArgumentException>(() => mag.Step(torch.zeros(1, 8), malState)).ParamName);   // same state type, other variant
        Assert.Equal("state", Assert.Throws<ArgumentException>(() => mag.Step(torch.zeros(1, 8), macState)).ParamName);
        Assert.Equal("state", Assert.Throws<ArgumentException>(() => otherMac.Step(torch.zeros(1, 8), macState)).ParamName);
        Assert.Equal("xT", Assert.Throws<ArgumentException>(() => mac.Step(torch.zeros(1, 1, 8), macState)).ParamName);
        Assert.Equal(0, macState.Position);
        using var mixer = new TitansMemory(8, 2);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => mixer.call(torch.zeros(2, 8))).ParamName);
    }

    /// <summary>
    /// MAC on the conformance grid: d = H·D (Dv = D: the memory's heads are square), segment = the grid's chunk, the memory's chunk
    /// half of it. MaxLr 0.1: at 0.5 the MLP memory's chunked form at chunk ≥ 16 overshoots (C gradient steps at one memory) and
    /// float32 turns NaN by T ≈ 60 while float64 stays finite (MAG alike; docs/decisions.md, P16).
    /// </summary>
    public static IEnumerable<object[]> MacShapes() => Conformance.ShapesWith("mlp", "linear");

    [Theory]
    [MemberData(nameof(MacShapes))]
    public void MacEqualsItsNaiveTwinOnTheConformanceGrid(Shape shape, string memory)
    {
        int d = shape.H * shape.D, segment = shape.Chunk, chunk = Math.Max(1, (shape.Chunk + 1) / 2);
        TitansMac Make(ScalarType dtype)
        {
            torch.manual_seed(3);
            var mac = new TitansMac(d, shape.H, segment, 2, Options(memory, chunk) with { MaxLr = 0.1 });   // see the summary
            mac.to(dtype);
            return mac;
        }
        using var mac64 = Make(float64);
        using var mac32 = Make(float32);
        Conformance.Check(shape, (s, dtype, g) => [torch.randn(s.B, s.T, d, generator: g, dtype: float64).to(dtype)],
            new Form("naive twin", i => new FormOutput(TitansNaive.Forward(mac64, i[0], chunk))),
            [new Form($"MAC chunked (segment {segment}, chunk {chunk})", i => new FormOutput((i[0].dtype == float64 ? mac64 : mac32).call(i[0])))],
            tol32: 1e-4, gradTol32: 1e-3, rms32: true);
    }

    [Theory]
    [InlineData("mlp", 1, 3, 3, 2, TitansMemoryForm.Chunked)]
    [InlineData("mlp", 11, 5, 4, 2, TitansMemoryForm.Chunked)]     // segments 5, 5, 1; chunks 4 + 1 inside a segment
    [InlineData("linear", 9, 4, 3, 0, TitansMemoryForm.Chunked)]   // no persistent tokens
    [InlineData("mlp", 8, 3, 1, 1, TitansMemoryForm.Recurrent)]
    [InlineData("linear", 7, 2, 1, 3, TitansMemoryForm.Recurrent)]
    public void MacParameterGradientsEqualTheNaiveTwin(string memory, int t, int segment, int chunk, int persistent, TitansMemoryForm form)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(1);
        using var mac = new TitansMac(10, 2, segment, persistent, Options(memory, chunk, form));
        mac.to(float64);
        var x = torch.randn(2, t, 10, dtype: float64, generator: new Generator(4));
        var (o, g) = Diff(mac, () => mac.call(x), () => TitansNaive.Forward(mac, x, form == TitansMemoryForm.Chunked ? chunk : 1));
        Assert.True(o <= 1e-10 && g <= 1e-10, $"outputs {o}, gradients {g}");
        Assert.True(mac.Memory.Proj.weight!.grad!.abs().max().item<double>() > 0, "the memory's reads reach the output");
    }

    [Fact]
    public void MacIsCausalAndCarriesTheMemoryAcrossSegments()
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(1);
        using var mac = new TitansMac(10, 2, 4, 2, Options("mlp", 4));
        mac.to(float64);
        var x = torch.randn(1, 12, 10, dtype: float64, generator: new Generator(9));
        var bumped = x.clone();
        bumped.select(1, 5).add_(1.0);                                                        // a token inside the second segment
        var delta = (mac.call(bumped) - mac.call(x)).abs().amax(new long[] { 0, 2 });
        Assert.Equal(0.0, delta.narrow(0, 0, 5).max().item<double>());                        // nothing before it moves, not even in its segment
        Assert.True(delta[5].item<double>() > 0);
        Assert.True(delta.narrow(0, 8, 4).min().item<double>() > 0, "the third segment reads the token through the memory");
        using var cut = new TitansMac(10, 2, 4, 2, Options("mlp", 4) with { ConvKernel = 0 });
        cut.to(float64);
        var bumpedFirst = x.clone();
        bumpedFirst.select(1, 0).add_(1.0);                                                   // without conv, only the memory links segments
        var far = (cut.call(bumpedFirst) - cut.call(x)).abs().narrow(1, 4, 8).min().item<double>();
        Assert.True(far > 0, "the next segments must see the first one through the memory");
    }

    [Fact]
    public void MacNaNInGivesNaNOutFromThatToken()
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(1);
        using var mac = new TitansMac(10, 2, 4, 2, Options("mlp", 4));
        var x = torch.randn(1, 10, 10, generator: new Generator(10));
        x[0, 6, 3] = torch.tensor(float.NaN);
        var y = mac.call(x);
        // the chunked core may spread a NaN over its own chunk (0·NaN in the masked products), never to an earlier one
        Assert.False(y.narrow(1, 0, 4).isnan().any().item<bool>(), "segments before the NaN's stay finite");
        Assert.True(y.select(1, 6).isnan().all().item<bool>(), "the NaN token's output is NaN");
    }

    static TitansResult Hand(double linearRecall = 1.0, double swaRecall = 0.0, double magFar = 0.95, double swaNear = 1.0, double swaFar = 0.12,
        double exactError = 0)
    {
        var c = TitansExperiment.Config.Smoke;
        int d = c.DModel;
        var exact = new List<ExactnessCheck>
        {
            new("MLP memory, chunked vs naive twin: outputs", exactError, 1e-10), new("linear memory, chunked vs naive twin: outputs", 0, 1e-10),
            new("MAG vs naive twin: outputs", 0, 1e-10), new("MAL vs naive twin: outputs", 0, 1e-10), new("MAC vs naive twin: outputs", 0, 1e-10),
            new("memory: streaming Step vs forward", 0, 1e-10), new("MAG: perturbing x_T", 0, 0),
        };
        var mech = new List<RecallPoint>();
        foreach (int p in new[] { d / 4, d / 2, d, 2 * d })
        {
            mech.Add(new RecallPoint("linear", p, 32, linearRecall));
            mech.Add(new RecallPoint("mlp", p, 32, linearRecall));
            mech.Add(new RecallPoint("SWA", p, 32, swaRecall));
        }
        static List<QueryOutcome> Queries(double near, double far)
        {
            var q = new List<QueryOutcome>();
            for (int i = 0; i < 100; i++) q.Add(new QueryOutcome(2, i < near * 100));
            for (int i = 0; i < 100; i++) q.Add(new QueryOutcome(50, i < far * 100));
            return q;
        }
        var runs = new List<ModelRun>
        {
            new("SWA", 1, 1, 0.01, [2.0], Queries(swaNear, swaFar)),
            new("MAG", 1, 2, 0.02, [1.0], Queries(swaNear, magFar)),
        };
        return new TitansResult(c, exact, mech, runs, null, 1, new Dictionary<string, double>());
    }

    static ClaimStatus Status(TitansResult r, string id) => r.Claims()[id].Status;

    [Fact]
    public void EachClaimFlipsWhenItsMeasurementCrossesTheCriterion()
    {
        Assert.Equal(ClaimStatus.Holds, Status(Hand(), "memory-fast-equals-naive"));
        Assert.Equal(ClaimStatus.DoesNotHold, Status(Hand(exactError: 1e-6), "memory-fast-equals-naive"));
        Assert.Equal(ClaimStatus.Holds, Status(Hand(), "memory-recall-beyond-window"));
        Assert.Equal(ClaimStatus.DoesNotHold, Status(Hand(linearRecall: 0.8), "memory-recall-beyond-window"));
        Assert.Equal(ClaimStatus.DoesNotHold, Status(Hand(swaRecall: 0.5), "memory-recall-beyond-window"));
        Assert.Equal(ClaimStatus.Holds, Status(Hand(), "mag-recall-beyond-window"));
        Assert.Equal(ClaimStatus.DoesNotHold, Status(Hand(magFar: 0.5), "mag-recall-beyond-window"));
        Assert.Equal(ClaimStatus.Holds, Status(Hand(), "mag-beats-swa-4x-window"));
        Assert.Equal(ClaimStatus.DoesNotHold, Status(Hand(magFar: 0.3), "mag-beats-swa-4x-window"));
        Assert.Equal(ClaimStatus.Holds, Status(Hand(), "swa-wins-in-window"));
        Assert.Equal(ClaimStatus.DoesNotHold, Status(Hand(swaNear: 0.2), "swa-wins-in-window"));
        // Every model at chance, the baseline untrained inside its window: the trained claim is not shown, and not asserted.
        var untrained = Hand(magFar: 0.125, swaNear: 0.125, swaFar: 0.125).Claims();
        Assert.Equal(ClaimStatus.NotShown, untrained["mag-recall-beyond-window"].Status);
        Assert.Empty(untrained.Failures);
        Assert.NotEmpty(Hand(magFar: 0.5).Claims().Failures);
    }
}
