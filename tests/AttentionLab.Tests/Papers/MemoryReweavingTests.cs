using AttentionLab.Core;
using AttentionLab.Papers.MemoryReweaving;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// P32 Contextual Memory Reweaving ([ours] operationalisation): the masked reconstruct read against its FIFO-queue twin over the
/// shared grid (outputs and the gradients of q, k^ℓ, v^ℓ, w_λ), the spec's §6 checks (gate closed = backbone, causality, buffer
/// capacity and order), bad input, NaN propagation, the task, claims that flip, and the smoke run.
/// </summary>
public class MemoryReweavingTests(ITestOutputHelper output)
{
    /// <summary>q, k^0, k^1 [B, T, H, D], v^0, v^1 [B, T, H, Dv], w_λ [2].</summary>
    static Tensor[] Inputs(Shape s, ScalarType dtype, Generator g) =>
    [
        torch.randn(s.B, s.T, s.H, s.D, generator: g, dtype: float64).to(dtype),
        torch.randn(s.B, s.T, s.H, s.D, generator: g, dtype: float64).to(dtype),
        torch.randn(s.B, s.T, s.H, s.D, generator: g, dtype: float64).to(dtype),
        torch.randn(s.B, s.T, s.H, s.Dv, generator: g, dtype: float64).to(dtype),
        torch.randn(s.B, s.T, s.H, s.Dv, generator: g, dtype: float64).to(dtype),
        torch.randn(2, generator: g, dtype: float64).to(dtype),
    ];

    /// <summary>The grid × window W (1, 3): the capacity S is the shape's chunk (1 … 64: a single slot, S ≥ T, S not dividing T).</summary>
    public static IEnumerable<object[]> GridWithWindow() => Conformance.ShapesWith(1, 3);

    [Theory]
    [MemberData(nameof(GridWithWindow))]
    public void ReadConformsToTheFifoTwin(Shape shape, int window)
    {
        int capacity = shape.Chunk;
        Conformance.Check(shape, Inputs,
            new Form("fifo-queue loop", x => new FormOutput(MemoryReweavingNaive.Read(x[0], [x[1], x[2]], [x[3], x[4]], x[5], window, capacity))),
            [new Form("masked", x => new FormOutput(MemoryReweavingOps.Read(x[0], [x[1], x[2]], [x[3], x[4]], x[5], window, capacity).M))],
            tol32: 1e-5, rms32: true);
    }

    [Fact]
    public void ExactnessPhaseHolds()
    {
        var e = MemoryReweavingExperiment.Exactness(torch.CPU);
        Assert.True(e.ReadMaxAbs <= 1e-10, $"read {e.ReadMaxAbs}");
        Assert.True(e.GradMaxAbs <= 1e-10, $"grad {e.GradMaxAbs}");
        Assert.Equal(0.0, e.GateClosedMaxAbs);
        Assert.Equal(0.0, e.CausalityLeak);
        Assert.True(e.CausalityReach > 0);
        Assert.Equal(0, e.MaskMismatches);
        Assert.Equal(0, e.RowsOverCapacity);
    }

    [Fact]
    public void BufferHoldsOnlyTokensThatLeftTheWindowUpToCapacity()
    {
        using var mask = MemoryReweavingOps.BufferMask(10, window: 3, capacity: 2);
        // row t holds s with 3 ≤ t − s < 5
        Assert.False(mask[2].any().item<bool>());
        Assert.Equal(new[] { 0L }, mask[3].nonzero().flatten().data<long>().ToArray());
        Assert.Equal(new[] { 4L, 5L }, mask[8].nonzero().flatten().data<long>().ToArray());
        Assert.True((mask.sum(1) <= 2).all().item<bool>());
    }

    [Fact]
    public void OpenGateChangesTheOutputAndClosedGateDoesNot()
    {
        torch.manual_seed(1);
        using var buffer = new LayeredStateBuffer([0], capacity: 4, window: 3);
        using var mixer = new MemoryReweavingMixer(8, 2, 3, 0, buffer, targetLayer: 0);
        using var plain = new MemoryReweavingMixer(8, 2, 3, 0);
        using (torch.no_grad())
        {
            plain.Qkv.weight!.copy_(mixer.Qkv.weight!); plain.Qkv.bias!.copy_(mixer.Qkv.bias!);
            plain.Proj.weight!.copy_(mixer.Proj.weight!); plain.Proj.bias!.copy_(mixer.Proj.bias!);
        }
        using var x = torch.randn(2, 11, 8);
        // before t = W the buffer is empty: the output is the backbone's; after, the open gate adds the read
        using var gap = (mixer.call(x) - plain.call(x)).abs();
        Assert.Equal(0.0, gap.narrow(1, 0, 3).max().item<float>());
        Assert.True(gap.narrow(1, 3, 8).max().item<float>() > 0);
        mixer.Reweaver!.CloseGate();
        Assert.Equal(0.0, (mixer.call(x) - plain.call(x)).abs().max().item<float>());
    }

    [Fact]
    public void NaNInGivesNaNOut()
    {
        using var q = torch.randn(1, 6, 1, 3);
        using var k = torch.randn(1, 6, 1, 3);
        using var v = torch.randn(1, 6, 1, 3);
        v[0, 0, 0, 0] = torch.tensor(float.NaN);
        using var lambda = torch.zeros(1);
        using var m = MemoryReweavingOps.Read(q, [k], [v], lambda, 2, 3).M;
        Assert.True(m[0, 2].isnan().any().item<bool>());                                  // token 0 is in t = 2's buffer

        torch.manual_seed(0);
        using var buffer = new LayeredStateBuffer([0], capacity: 4, window: 2);
        using var mixer = new MemoryReweavingMixer(6, 2, 2, 0, buffer, targetLayer: 0);
        using var x = torch.randn(1, 5, 6);
        x[0, 4, 0] = torch.tensor(float.NaN);
        Assert.True(mixer.call(x)[0, 4].isnan().all().item<bool>());
    }

    [Fact]
    public void BadArgumentsNameTheArgument()
    {
        using var q = torch.randn(1, 5, 2, 3);
        using var v = torch.randn(1, 5, 2, 4);
        using var lambda = torch.zeros(1);
        Assert.Equal("q", Assert.ThrowsAny<ArgumentException>(() => MemoryReweavingOps.Read(torch.randn(5, 2, 3), [q], [v], lambda, 2, 2)).ParamName);
        Assert.Equal("keys", Assert.ThrowsAny<ArgumentException>(() => MemoryReweavingOps.Read(q, [], [], lambda, 2, 2)).ParamName);
        Assert.Equal("values", Assert.ThrowsAny<ArgumentException>(() => MemoryReweavingOps.Read(q, [q], [v, v], lambda, 2, 2)).ParamName);
        Assert.Equal("lambdaLogits", Assert.ThrowsAny<ArgumentException>(() => MemoryReweavingOps.Read(q, [q], [v], torch.zeros(2), 2, 2)).ParamName);
        Assert.Equal("window", Assert.ThrowsAny<ArgumentException>(() => MemoryReweavingOps.Read(q, [q], [v], lambda, 0, 2)).ParamName);
        Assert.Equal("capacity", Assert.ThrowsAny<ArgumentException>(() => MemoryReweavingNaive.Read(q, [q], [v], lambda, 2, 0)).ParamName);
        Assert.Equal("layers", Assert.ThrowsAny<ArgumentException>(() => new LayeredStateBuffer([1, 1], 2, 2)).ParamName);
        Assert.Equal("capacity", Assert.ThrowsAny<ArgumentException>(() => new LayeredStateBuffer([1], 0, 2)).ParamName);
        Assert.Equal("sourceLayers", Assert.ThrowsAny<ArgumentException>(() => new MemoryReweaver(8, 2, 1, [2])).ParamName);
        Assert.Equal("heads", Assert.ThrowsAny<ArgumentException>(() => new MemoryReweaver(8, 3, 1, [0])).ParamName);
        using var buffer = new LayeredStateBuffer([0], 2, 3);
        Assert.Equal("buffer", Assert.ThrowsAny<ArgumentException>(() => new MemoryReweavingMixer(8, 2, 4, 0, buffer, 0)).ParamName);
        Assert.Equal("layer", Assert.ThrowsAny<ArgumentException>(() => buffer.Capture(1, torch.zeros(1, 2, 8))).ParamName);
        Assert.Equal("distance", Assert.ThrowsAny<ArgumentException>(() => new RareFactsTask(Length: 32).Generate(1, 0, distance: 40)).ParamName);
    }

    [Fact]
    public void TaskPlacesFactsAtTheDistanceAndLabelsTheQueries()
    {
        var task = new RareFactsTask(Length: 40, Facts: 3, Keys: 8, Values: 5, Fillers: 4);
        using var batch = task.Generate(4, seed: 3, distance: 20);
        var tokens = batch.Tokens.data<long>().ToArray();
        var labels = batch.Labels.data<long>().ToArray();
        for (int n = 0; n < 4; n++)
        {
            int row = n * 40, p0 = task.FirstQuery - 2 * 3 + 1 - 20;
            for (int i = 0; i < 40; i++)
            {
                bool query = i >= task.FirstQuery, fact = i >= p0 && i < p0 + 6;
                Assert.Equal(query, labels[row + i] != -100);
                if (!query && !fact) Assert.True(tokens[row + i] >= 13);                  // filler
                if (query)
                {
                    int at = Enumerable.Range(0, 3).Single(f => tokens[row + p0 + 2 * f] == tokens[row + i]);
                    Assert.Equal(tokens[row + p0 + 2 * at + 1], labels[row + i]);       // the fact's value
                    Assert.Equal(20, task.FirstQuery - (p0 + 5));
                }
            }
        }
        Assert.True(task.IsRare(4) && !task.IsRare(3) && !task.IsRare(8));
    }

    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", MemoryReweavingExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", MemoryReweavingExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (MemoryReweavingExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
    }

    [Fact]
    public void BackboneHasTheReweavingModelsParameterCount()
    {
        var config = MemoryReweavingExperiment.Config.Smoke;
        var (b, _) = MemoryReweavingExperiment.Build(MemoryReweavingExperiment.BackboneName, config, 0);
        var (r, buffer) = MemoryReweavingExperiment.Build(MemoryReweavingExperiment.ReweaveName, config, 0);
        using (b) using (r) using (buffer)
        {
            var reweaver = ((MemoryReweavingMixer)r.Blocks[config.TargetLayer].Mixer).Reweaver!;
            Assert.Equal(MemoryReweavingExperiment.ReweaverParameters(config.DModel, config.SourceLayers.Length), reweaver.parameters().Sum(p => p.numel()));
            Assert.True(Math.Abs(b.ParameterCount - r.ParameterCount) <= 0.01 * r.ParameterCount, $"{b.ParameterCount} vs {r.ParameterCount}");
        }
    }

    static MemoryReweavingResult Hand(double reweave, double backbone, double rareReweave, double msReweave, ReweavingExactness? exact = null)
    {
        var config = MemoryReweavingExperiment.Config.Smoke with { Distances = new[] { 4, 64 }, Size = "custom" };
        RecallRow Row(string m, int d, double a, double rare) => new(m, d, d >= config.Window, a, rare, a, 10);
        var rows = new[]
        {
            Row(MemoryReweavingExperiment.BackboneName, 4, 0.9, 0.9), Row(MemoryReweavingExperiment.BackboneName, 64, backbone, backbone),
            Row(MemoryReweavingExperiment.ReweaveName, 4, 0.9, 0.9), Row(MemoryReweavingExperiment.ReweaveName, 64, reweave, rareReweave),
        };
        var overhead = new[]
        {
            new OverheadRow(MemoryReweavingExperiment.BackboneName, 1000, 10, 5, 100), new OverheadRow(MemoryReweavingExperiment.ReweaveName, 1000, msReweave,
                6, 200),
        };
        exact ??= new ReweavingExactness(0, 0, 0, 0, 1, 0, 0, "hand");
        return new MemoryReweavingResult(config, exact, rows, new Dictionary<string, IReadOnlyList<double>>(), [new[] { 0.5, 0.5 }],
            new BufferHeatmap(64, ["layer 1"], [new double[] { 1 }], 0), overhead, 1, new Dictionary<string, double>());
    }

    [Fact]
    public void ClaimsFlipWithTheirMeasurements()
    {
        var good = Hand(0.8, 0.1, 0.8, 12).Claims();
        Assert.Empty(good.Failures);
        Assert.Equal(ClaimStatus.Holds, good["beyond-window-recall"].Status);
        Assert.True(good["beyond-window-recall"].Asserted);
        Assert.Equal(ClaimStatus.Holds, good["rare-keys"].Status);
        Assert.Equal(ClaimStatus.Holds, good["overhead"].Status);

        var flat = Hand(0.25, 0.1, 0.05, 20).Claims();
        Assert.Equal(ClaimStatus.DoesNotHold, flat["beyond-window-recall"].Status);
        Assert.False(flat["beyond-window-recall"].Asserted);
        Assert.Equal(ClaimStatus.DoesNotHold, flat["rare-keys"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, flat["overhead"].Status);
        Assert.Empty(flat.Failures);

        var chance = Hand(0.07, 0.07, 0.05, 12);
        chance = chance with { Rows = chance.Rows.Select(r => r with { Accuracy = Math.Min(r.Accuracy, 0.1) }).ToList() };
        Assert.Equal(ClaimStatus.NotShown, chance.Claims()["beyond-window-recall"].Status);

        var e = new ReweavingExactness(0, 0, 0, 0, 1, 0, 0, "hand");
        Assert.Contains(Hand(0.8, 0.1, 0.8, 12, e with { GradMaxAbs = 1e-8 }).Claims().Failures, c => c.Id == "read-equals-naive");
        Assert.Contains(Hand(0.8, 0.1, 0.8, 12, e with { GateClosedMaxAbs = 1e-5 }).Claims().Failures, c => c.Id == "gate-closed-is-backbone");
        Assert.Contains(Hand(0.8, 0.1, 0.8, 12, e with { CausalityLeak = 1e-12 }).Claims().Failures, c => c.Id == "causality");
        Assert.Contains(Hand(0.8, 0.1, 0.8, 12, e with { RowsOverCapacity = 1 }).Claims().Failures, c => c.Id == "buffer-capacity-order");
    }

    [Fact]
    public void SmokeRunReportsItsClaims()
    {
        var result = MemoryReweavingExperiment.Run(MemoryReweavingExperiment.Config.Smoke, torch.CPU, new Progress(output));
        var claims = result.Claims();
        foreach (var c in claims) output.WriteLine($"{c.Id}: {ClaimRecord.StatusText(c.Status)} — {c.Ours}");
        foreach (var s in claims.Observations) output.WriteLine(s);
        Assert.Empty(claims.Failures);
        Assert.Equal(MemoryReweavingExperiment.Paper.Number, claims.Paper);
        Assert.Equal(2 * result.Config.Distances.Length, result.Rows.Count);
        Assert.All(result.Rows, r => Assert.InRange(r.Accuracy, 0, 1));
        Assert.Equal(2, result.Overhead.Count);
        Assert.NotEmpty(result.LambdaTrace);
        Assert.Equal(result.Config.SourceLayers.Length, result.Heatmap.Weights.Count);
    }

    sealed class Progress(ITestOutputHelper output) : IProgress<string>
    {
        public void Report(string value) => output.WriteLine(value);
    }
}
