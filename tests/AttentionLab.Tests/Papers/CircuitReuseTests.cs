using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Papers.CircuitReuse;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// P46 Circuit component reuse: the prompt generators, path patching against its loop twin and activation patching, the
/// spec §6 identities on an untrained model, circuits and overlap on known sets, the intervention hook, bad input, and a
/// reduced run on the shipped checkpoint.
/// </summary>
public class CircuitReuseTests
{
    static TinyGpt RandomModel(int seed = 3)
    {
        manual_seed(seed);
        var model = new TinyGpt(CircuitReuseCheckpoint.Config);
        model.eval();
        return model;
    }

    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", CircuitReuseExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", CircuitReuseExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal("custom", (CircuitReuseExperiment.Config.Smoke with { Seed = 1, Size = "custom" }).Size);
    }

    [Fact]
    public void IoiPairsFlipTheRepeatedNameAndShareTheirEnd()
    {
        var p = ReuseData.Pairs(ReuseTask.Ioi, 32, 5);
        using (p.Clean) using (p.Corrupt)
        {
            var x = p.Clean.data<long>().ToArray();
            var xc = p.Corrupt.data<long>().ToArray();
            for (int i = 0; i < p.Count; i++)
            {
                var row = x.Skip(i * 11).Take(11).ToArray();
                var rowC = xc.Skip(i * 11).Take(11).ToArray();
                long[] names = { row[2], row[4], row[7] };
                Assert.Single(names, n => n == p.Answer[i]);                        // the IO name appears once
                Assert.Equal(p.Answer[i], row[p.AnswerPosition[i]]);
                Assert.Equal(p.Answer[i], rowC[7]);                                  // corrupted: the IO is repeated
                Assert.Equal(p.CorruptAnswer[i], row[7]);
                Assert.Equal(row[10], rowC[10]);
                Assert.Equal(row.Where((_, j) => j != 7), rowC.Where((_, j) => j != 7));
            }
        }
    }

    [Fact]
    public void ColoredObjectPairsAskAboutAnotherObject()
    {
        var p = ReuseData.Pairs(ReuseTask.ColoredObjects, 32, 6);
        var vocab = new ReuseVocabulary();
        using (p.Clean) using (p.Corrupt)
        {
            var x = p.Clean.data<long>().ToArray();
            var xc = p.Corrupt.data<long>().ToArray();
            for (int i = 0; i < p.Count; i++)
            {
                var row = x.Skip(i * 11).Take(11).ToArray();
                var rowC = xc.Skip(i * 11).Take(11).ToArray();
                Assert.Equal(row[10], row[p.AnswerPosition[i]]);                     // the mover's source is the asked object
                Assert.Equal(p.Answer[i], row[p.AnswerPosition[i] - 1]);            // its colour precedes it
                Assert.NotEqual(row[10], rowC[10]);
                Assert.NotEqual(p.Answer[i], p.CorruptAnswer[i]);
                int k = Array.IndexOf(row, rowC[10]);
                Assert.Equal(p.CorruptAnswer[i], row[k - 1]);
                Assert.StartsWith("<bos> ", vocab.Text(row));
            }
        }
    }

    [Fact]
    public void PathPatchingMatchesItsLoopTwinAndActivationPatching()
    {
        using var model = RandomModel();
        foreach (var task in new[] { ReuseTask.Ioi, ReuseTask.ColoredObjects })
        {
            var p = ReuseData.Pairs(task, 6, 11);
            using (p.Clean) using (p.Corrupt)
            {
                var fast = CircuitReuseOps.PathEffects(model, p);
                var naive = CircuitReuseNaive.PathEffects(model, p);
                var unfrozen = CircuitReuseOps.PathEffects(model, p, freezeOtherHeads: false);
                var activation = CircuitReuseOps.ActivationEffects(model, p);
                for (int l = 0; l < 3; l++)
                    for (int h = 0; h < 4; h++)
                    {
                        Assert.Equal(naive[l, h], fast[l, h], 4);
                        Assert.Equal(activation[l, h], unfrozen[l, h], 4);
                    }
                // the last layer has nothing downstream to freeze: path and activation patching agree there too
                for (int h = 0; h < 4; h++) Assert.Equal(activation[2, h], fast[2, h], 4);
            }
        }
    }

    [Fact]
    public void SpecIdentitiesHoldOnAnUntrainedModel()
    {
        using var model = RandomModel(4);
        foreach (var task in new[] { ReuseTask.Ioi, ReuseTask.ColoredObjects })
        {
            var p = ReuseData.Pairs(task, 5, 12);
            using (p.Clean) using (p.Corrupt)
            {
                var (_, corrupt) = CircuitReuseOps.LogitDiffs(model, p);
                Assert.Equal(corrupt, CircuitReuseOps.PatchEverything(model, p), 4);
                var same = p with { Corrupt = p.Clean };
                for (int l = 0; l < 3; l++)
                    for (int h = 0; h < 4; h++) Assert.Equal(0.0, CircuitReuseNaive.RawPathEffect(model, same, l, h), 6);
            }
        }
    }

    [Fact]
    public void CircuitsAndOverlapOnKnownSets()
    {
        var effects = new double[,] { { 0.05, -0.2, 0.1 }, { 0.5, 0.0, 0.11 } };
        var circuit = CircuitReuseOps.Circuit(effects, 0.1);
        Assert.Equal(new HashSet<(int, int)> { (0, 1), (1, 0), (1, 2) }, circuit);
        Assert.Equal(1.0 / 3, CircuitReuseOps.Overlap(new[] { (0, 1), (1, 2) }, new[] { (1, 2), (2, 3) }), 12);
        Assert.Equal(1.0, CircuitReuseOps.Overlap(circuit, circuit));
        Assert.Equal(0.0, CircuitReuseOps.Overlap(new[] { (0, 0) }, new[] { (0, 1) }));
        Assert.Throws<ArgumentException>("threshold", () => CircuitReuseOps.Circuit(effects, -1));
        Assert.Throws<ArgumentException>("threshold", () => CircuitReuseOps.Circuit(effects, double.NaN));
        Assert.ThrowsAny<ArgumentException>(() => ReuseData.Pairs(ReuseTask.Ioi, 0, 0));
    }

    [Fact]
    public void InterventionPutsTheEndRowOnTheAnswerAndLeavesTheRest()
    {
        using var model = RandomModel(5);
        var p = ReuseData.Pairs(ReuseTask.ColoredObjects, 4, 13);
        using (p.Clean) using (p.Corrupt)
        {
            var hooks = CircuitReuseOps.AttendToAnswer(model, p, new[] { (1, 2) });
            var name = ActName.Get("pattern", 1);
            Assert.Equal(name, Assert.Single(hooks).Name);
            using var pattern = softmax(randn(4, 4, 11, 11), -1);
            using var patched = hooks[0].Fn(pattern, model.HookPoints[name])!;
            for (int b = 0; b < 4; b++)
                Assert.Equal(1f, patched[b, 2, 10, p.AnswerPosition[b]].item<float>());
            Assert.Equal(4f, patched[.., 2, 10].sum().item<float>(), 5);
            Assert.True(patched[.., 2, ..10].allclose(pattern[.., 2, ..10], 0, 0));
            Assert.True(patched[.., 0].allclose(pattern[.., 0], 0, 0));
        }
    }

    [Fact]
    public void NanLogitsGiveNanLogitDifference()
    {
        var p = ReuseData.Pairs(ReuseTask.Ioi, 2, 1);
        using (p.Clean) using (p.Corrupt)
        {
            using var logits = full(2, 11, ReuseVocabulary.Size, double.NaN);
            Assert.True(double.IsNaN(CircuitReuseOps.LogitDiff(p)(logits)));
            Assert.True(double.IsNaN(CircuitReuseNaive.Ld(logits, p)));
        }
    }

    [Fact]
    public void ReducedRunOnTheCheckpointPassesItsChecks()
    {
        var result = CircuitReuseExperiment.Run(CircuitReuseExperiment.Config.Smoke with { Prompts = 24, Size = "custom" }, CPU);
        var claims = result.Claims();
        Assert.Empty(claims.Failures);
        Assert.Equal(CircuitReuseExperiment.Paper.Number, claims.Paper);
        Assert.True(result.AccuracyIoi > 0.9);
        Assert.Equal(12, result.ToDataFrame().Rows.Count);
    }
}
