using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Papers.Hcam;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// P20 HCAM: the gathered top-k read against its loop twin over the shared grid (outputs and the gradients of q, k, v;
/// T not a multiple of C, T &lt; C, C = 1), the spec's §6 identities, the mixer (stop-gradient, hooks, bad input), the task.
/// </summary>
public class HcamTests
{
    /// <summary>q, k [B, T, H, D], v [B, T, H, Dv].</summary>
    static Tensor[] Inputs(Shape s, ScalarType dtype, Generator g) =>
    [
        torch.randn(s.B, s.T, s.H, s.D, generator: g, dtype: float64).to(dtype),
        torch.randn(s.B, s.T, s.H, s.D, generator: g, dtype: float64).to(dtype),
        torch.randn(s.B, s.T, s.H, s.Dv, generator: g, dtype: float64).to(dtype),
    ];

    public static IEnumerable<object[]> GridWithK() => Conformance.ShapesWith(1, 2, 64);

    /// <summary>The read (summaries from k, top-k, fine attention) equals the loop twin: outputs and gradients of q, k, v.</summary>
    [Theory]
    [MemberData(nameof(GridWithK))]
    public void ReadConformsToTheNaiveTwin(Shape shape, int topK)
    {
        int c = Math.Min(shape.Chunk, 8);                                                   // chunks of 1 … 8: several per sequence
        Conformance.Check(shape, Inputs,
            new Form("naive", x => new FormOutput(HcamNaive.Read(x[0], HcamNaive.Summaries(x[1], c), x[1], x[2], c, topK))),
            [new Form("gathered", x => new FormOutput(HcamAttention.Read(x[0], HcamAttention.Summaries(x[1], c), x[1], x[2], c, topK).Z))],
            tol32: 1e-5, rms32: true);
    }

    [Fact]
    public void ExactnessPhaseHolds()
    {
        var e = HcamExperiment.Exactness(torch.CPU);
        Assert.True(e.ReadMaxAbs <= 1e-10, $"read {e.ReadMaxAbs}");
        Assert.True(e.GradMaxAbs <= 1e-10, $"grad {e.GradMaxAbs}");
        Assert.True(e.SoftmaxMaxAbs <= 1e-6, $"C = 1 softmax {e.SoftmaxMaxAbs}");
        Assert.True(e.WeightSumDeviation <= 1e-6);
        Assert.Equal(0, e.HiddenChosen);
        Assert.True(e.PatternMaxAbs <= 1e-10);
        Assert.Equal(0.0, e.StopGradientLeak);
        Assert.True(e.QueryGradient > 0);
    }

    [Fact]
    public void SoftmaxIsOverTheChosenOnlyNotTruncatedGlobal()
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(3);
        var (q, k, v) = (torch.randn(1, 20, 1, 4, generator: gen, dtype: float64) * 2, torch.randn(1, 20, 1, 4, generator: gen, dtype: float64) * 2,
            torch.randn(1, 20, 1, 3, generator: gen, dtype: float64));
        var read = HcamAttention.Read(q, HcamAttention.Summaries(k, 4), k, v, 4, 2);
        var last = read.Weights[0, 19];                                                     // 4 chunks visible at t = 19
        Assert.Equal(1.0, last.sum().item<double>(), 12);
        var all = HcamAttention.CoarseScores(q, HcamAttention.Summaries(k, 4), 4)[0, 19].softmax(0L);
        var truncated = all.index_select(0, read.Selected[0, 19]);
        Assert.True((truncated - last).abs().max().item<double>() > 1e-3, "a truncated global softmax would be a different model");
    }

    [Fact]
    public void ChunksAreVisibleOnlyOnceComplete()
    {
        var visible = HcamAttention.Visible(10, 2, 4, torch.CPU);
        Assert.False(visible[3, 0].item<bool>());                                           // the chunk t sits in
        Assert.True(visible[4, 0].item<bool>());
        Assert.False(visible[7, 1].item<bool>());
        Assert.True(visible[8, 1].item<bool>());
        // a query with no complete chunk reads nothing
        using var q = torch.randn(1, 4, 1, 2, dtype: float64);
        var read = HcamAttention.Read(q, HcamAttention.Summaries(q, 4), q, q, 4, 2);
        Assert.Equal(0.0, read.Z.abs().max().item<double>());
    }

    [Fact]
    public void NaNInGivesNaNOut()
    {
        using var q = torch.randn(1, 9, 1, 2, dtype: float64);
        q[0, 8, 0, 0] = torch.tensor(double.NaN, dtype: float64);
        var z = HcamAttention.Read(q, HcamAttention.Summaries(q.detach().nan_to_num(0), 4), q.nan_to_num(0), q.nan_to_num(0), 4, 1).Z;
        Assert.True(z[0, 8].isnan().any().item<bool>());
    }

    [Fact]
    public void MixerMemoryPatternHookReproducesAndPatchesTheOutput()
    {
        torch.manual_seed(0);
        using var mixer = new HcamMixer(8, 2, chunkSize: 3, topK: 2);
        var x = torch.randn(2, 11, 8);
        var plain = mixer.call(x);
        Tensor? seen = null;
        using (mixer.HookMemoryPattern.AddHook((a, _) => { seen = a.detach().clone().DetachFromDisposeScope(); return null; }))
            AssertClose.Tensors(mixer.call(x), plain, 1e-5, 1e-5, "with an observing hook");
        Assert.NotNull(seen);
        Assert.Equal(new long[] { 2, 2, 11, 11 }, seen!.shape);
        Assert.Equal(0.0, seen.triu().abs().max().item<float>());                          // only strictly earlier, complete chunks
        using (mixer.HookMemoryPattern.AddHook((a, _) => torch.zeros_like(a)))
        {
            var ablated = mixer.call(x);
            Assert.True((ablated - plain).abs().max().item<float>() > 1e-4, "zeroing the memory pattern must change the output");
        }
    }

    [Fact]
    public void LocalOnlyMixerIgnoresTheDistantPast()
    {
        torch.manual_seed(1);
        using var mixer = new HcamMixer(8, 2, chunkSize: 4, topK: 0);
        var x = torch.randn(1, 12, 8);
        var y = x.clone();
        y[0, 0] = torch.randn(8);                                                           // outside the window of t = 11
        AssertClose.Tensors(mixer.call(x)[0, 11], mixer.call(y)[0, 11], 1e-6, 1e-6, "local only");
        using var hcam = new HcamMixer(8, 2, chunkSize: 4, topK: 2);
        Assert.True((hcam.call(x)[0, 11] - hcam.call(y)[0, 11]).abs().max().item<float>() > 1e-6, "HCAM reads the first chunk");
    }

    [Fact]
    public void BadInputNamesTheArgument()
    {
        Assert.Equal("chunkSize", Assert.ThrowsAny<ArgumentException>(() => new HcamMixer(8, 2, 0, 1)).ParamName);
        Assert.Equal("topK", Assert.Throws<ArgumentException>(() => new HcamMixer(8, 2, 4, -1)).ParamName);
        using var q = torch.randn(1, 8, 2, 4);
        Assert.Equal("topK", Assert.ThrowsAny<ArgumentException>(() => HcamAttention.Read(q, HcamAttention.Summaries(q, 4), q, q, 4, 0)).ParamName);
        Assert.Equal("summaries", Assert.Throws<ArgumentException>(() => HcamAttention.Read(q, torch.randn(1, 2, 2, 3), q, q, 4, 1)).ParamName);
        var five = q.narrow(1, 0, 5);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => HcamAttention.Read(q, HcamAttention.Summaries(q, 4), five, five, 4, 1)).ParamName);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => HcamAttention.Read(q[0], HcamAttention.Summaries(q, 4), q, q, 4, 1)).ParamName);
        Assert.Throws<InvalidOperationException>(() => new HcamMixer(8, 2, 4, 1).NewState(1, ScalarType.Float32, torch.CPU));
    }

    [Fact]
    public void TaskPutsEachAnswerInItsEventChunk()
    {
        var task = new HcamRecallTask();
        using var batch = task.Generate(3, 5, seed: 4);
        Assert.Equal(task.Length(5), (int)batch.Length);
        var tokens = batch.Tokens.data<long>().ToArray();
        var labels = batch.Labels.data<long>().ToArray();
        int length = task.Length(5), chunks = task.Events + 5;
        for (int n = 0; n < 3; n++)
            for (int i = 0; i < task.Events; i++)
            {
                int at = chunks * task.ChunkSize + i;
                long tag = tokens[n * length + at];
                Assert.InRange(tag, 0, task.Tags - 1);
                int chunk = Enumerable.Range(0, chunks).Single(j => tokens[n * length + j * task.ChunkSize] == tag);
                Assert.Equal(labels[n * length + at], tokens[n * length + chunk * task.ChunkSize + 1]);
            }
        Assert.Equal(3 * task.Events, labels.Count(l => l != -100));
        using var again = task.Generate(3, 5, seed: 4);
        Assert.True(again.Tokens.equal(batch.Tokens).all().item<bool>());
    }

    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", HcamExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", HcamExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (HcamExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
    }

    [Fact]
    public void ModelsShareTheirParameterCount()
    {
        var c = HcamExperiment.Config.Smoke;
        using var local = HcamExperiment.Build(HcamExperiment.LocalName, c, 0);
        using var full = HcamExperiment.Build(HcamExperiment.FullName, c, 0);
        using var hcam = HcamExperiment.Build(HcamExperiment.HcamName, c, 0);
        Assert.Equal(full.ParameterCount, hcam.ParameterCount);
        Assert.Equal(local.ParameterCount, hcam.ParameterCount);
    }

    [Fact]
    public void SmokeRunMeetsItsClaims()
    {
        var result = HcamExperiment.Run(HcamExperiment.Config.Smoke, torch.CPU);
        var claims = result.Claims();
        Assert.Empty(claims.Failures);
        Assert.Equal(HcamExperiment.Paper.Number, claims.Paper);
        Assert.Equal(3 * HcamExperiment.Config.Smoke.TestDistractors.Length, result.Rows.Count);
        Assert.All(result.Rows, r => Assert.InRange(r.Accuracy, 0, 1));
        Assert.All(result.Rows.Where(r => r.Model == HcamExperiment.HcamName), r => Assert.NotNull(r.TopOneHit));
        Assert.Equal(HcamExperiment.Config.Smoke.Task.Events, result.Heatmap.Weights.Count);
        Assert.True(HcamExperiment.Config.Smoke.FromCheckpoints);
        Assert.NotNull(result.Sources);
        Assert.All(new[] { HcamExperiment.LocalName, HcamExperiment.FullName, HcamExperiment.HcamName },
            m => Assert.StartsWith($"checkpoint {HcamCheckpoint.Name(m)} ", result.Sources![m]));
        Assert.Empty(result.TrainLoss);                                                   // nothing trained at smoke
    }

    /// <summary>The three shipped files are in the manifest with the smoke config and the recipe's command.</summary>
    [Fact]
    public void ShippedCheckpointsMatchTheSmokeConfig()
    {
        var store = AttentionLab.Train.CheckpointStore.Default();
        string readme = File.ReadAllText(Path.Combine(RepositoryData.Folder(), "README.md"));
        foreach (var (key, model) in HcamCheckpoint.Models)
        {
            var entry = store.Find(HcamCheckpoint.Name(model));
            Assert.NotNull(entry);
            Assert.Contains($"`{entry!.Sha256}`", readme);                                 // data/README.md lists the file, its digest and command
            Assert.Contains($"`{entry.Command}`", readme);
            Assert.Equal(HcamCheckpoint.Steps, entry!.Steps);
            Assert.Equal(HcamCheckpoint.Command(model), entry.Command);
            Assert.Contains($"-- hcam {key} ", entry.Command);
            using var loaded = HcamCheckpoint.Load(model, HcamExperiment.Config.Smoke).Model;
            Assert.Equal(HcamExperiment.Config.Smoke.DModel, loaded.Config.DModel);
        }
    }

    /// <summary>A config other than the checkpoint's, or another model's file, is refused with the store's message (differences and the command).</summary>
    [Fact]
    public void LoadingIntoAWrongConfigFailsClearly()
    {
        var smoke = HcamExperiment.Config.Smoke;
        var wider = Assert.Throws<ArgumentException>(() => HcamCheckpoint.Load(HcamExperiment.HcamName, smoke with { DModel = 32, Heads = 2 }));
        Assert.Contains("DModel: 48 vs 32", wider.Message);
        Assert.Contains("regenerate the checkpoint for yours with: " + HcamCheckpoint.Command(HcamExperiment.HcamName), wider.Message);
        var longer = Assert.Throws<ArgumentException>(() => HcamCheckpoint.Load(HcamExperiment.FullName, smoke with { Steps = 10 }));
        Assert.Contains($"Steps: {HcamCheckpoint.Steps} vs 10", longer.Message);

        // The local-only and HCAM models have the same tensors: only the recorded config tells their files apart.
        using var hcam = HcamExperiment.Build(HcamExperiment.HcamName, smoke, 0);
        var swapped = Assert.Throws<ArgumentException>(() => AttentionLab.Train.CheckpointStore.Default()
            .Load(hcam, HcamCheckpoint.Name(HcamExperiment.LocalName), smoke.ModelConfig(HcamExperiment.HcamName)));
        Assert.Contains($"Model: \"{HcamExperiment.LocalName}\" vs \"local ", swapped.Message);          // JSON writes '+' as \u002B
    }

    /// <summary>A result built by hand: the recall claims flip with the accuracies, and are "not shown" while no model learned.</summary>
    [Fact]
    public void ClaimsFlipWithTheirMeasurements()
    {
        var config = HcamExperiment.Config.Smoke with { TestDistractors = new[] { 8, 32, 64 }, Size = "custom" };
        var exact = new HcamExactness(1e-16, 1e-16, 1e-16, 0, 0, 1e-16, 0, 0.5, "toy");
        HcamResult Make(double hcam32, double full8, double full32, HcamExactness? e = null)
        {
            HcamRow Row(string m, int d, double acc) => new(m, d, 100, d / 8.0, 1, acc, m == HcamExperiment.HcamName ? 0.95 : null);
            var rows = new List<HcamRow>();
            foreach (int d in config.TestDistractors)
            {
                rows.Add(Row(HcamExperiment.LocalName, d, 0.1));
                rows.Add(Row(HcamExperiment.FullName, d, d == 8 ? full8 : full32));
                rows.Add(Row(HcamExperiment.HcamName, d, d == 8 ? 0.99 : hcam32));
            }
            return new HcamResult(config, e ?? exact, rows, new Dictionary<string, IReadOnlyList<double>>(),
                new HcamHeatmap(32, ["q"], [new double[36]], [0]),
                [new HcamTiming(HcamExperiment.HcamName, 100, 1, 10), new HcamTiming(HcamExperiment.HcamName, 548, 1.1, 50),
                 new HcamTiming(HcamExperiment.FullName, 100, 1, 20), new HcamTiming(HcamExperiment.FullName, 548, 3, 100)], 1,
                new Dictionary<string, double>());
        }
        var good = Make(hcam32: 0.95, full8: 0.99, full32: 0.5).Claims();
        Assert.Equal(ClaimStatus.Holds, good["recall-4x"].Status);
        Assert.True(good["recall-4x"].Asserted);
        Assert.Equal(ClaimStatus.Holds, good["full-attention-degrades"].Status);
        Assert.Equal(ClaimStatus.Holds, good["hcam-about-90"].Status);
        Assert.Empty(good.Failures);

        var close = Make(hcam32: 0.6, full8: 0.99, full32: 0.5).Claims();            // 10 pp: below the spec's 20 pp
        Assert.Equal(ClaimStatus.DoesNotHold, close["recall-4x"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, close["hcam-about-90"].Status);
        var fullHolds = Make(hcam32: 0.95, full8: 0.99, full32: 0.97).Claims();      // the baseline can win
        Assert.Equal(ClaimStatus.DoesNotHold, fullHolds["recall-4x"].Status);
        Assert.Equal(ClaimStatus.DoesNotHold, fullHolds["full-attention-degrades"].Status);

        var unlearned = new HcamResult(config, exact, Make(0.3, 0.3, 0.2).Rows.Select(r => r with { Accuracy = Math.Min(r.Accuracy, 0.3) }).ToList(),
            new Dictionary<string, IReadOnlyList<double>>(), new HcamHeatmap(32, ["q"], [new double[36]], [0]), [], 1, new Dictionary<string, double>());
        Assert.False(unlearned.Learned);
        Assert.Equal(ClaimStatus.NotShown, unlearned.Claims()["recall-4x"].Status);

        var broken = Make(0.95, 0.99, 0.5, exact with { StopGradientLeak = 1e-3 }).Claims();
        Assert.Contains(broken.Failures, f => f.Id == "memory-stop-gradient");
        var twin = Make(0.95, 0.99, 0.5, exact with { GradMaxAbs = 1e-6 }).Claims();
        Assert.Contains(twin.Failures, f => f.Id == "read-equals-naive");
    }
}
