using AttentionLab.Data;
using AttentionLab.Papers.S2Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>The trained needle test's data, its off-stride rule and the decode benchmark's bookkeeping.</summary>
public class S2NeedleTests
{
    [Theory]
    [InlineData(0.0)]
    [InlineData(0.37)]
    [InlineData(1.0)]
    [InlineData(null)]
    public void NeedleRowsHaveOneNeedleAndItsLabel(double? depth)
    {
        var task = new S2NeedleTask(VocabSize: 20, Length: 33);
        var (batch, positions) = task.Generate(16, seed: 4, depth: depth);
        using (batch)
        {
            var tokens = batch.Tokens.data<long>().ToArray();
            var labels = batch.Labels.data<long>().ToArray();
            for (int n = 0; n < 16; n++)
            {
                var row = tokens.Skip(n * 33).Take(33).ToArray();
                var lab = labels.Skip(n * 33).Take(33).ToArray();
                Assert.Equal(S2NeedleTask.BosToken, row[0]);
                Assert.Equal(S2NeedleTask.QueryToken, row[^1]);
                var needles = Enumerable.Range(0, 33).Where(j => row[j] >= 10).ToArray();           // the needle half [V/2, V)
                Assert.Equal(new[] { positions[n] }, needles);
                if (depth is double d) Assert.Equal(task.PositionAt(d), positions[n]);
                Assert.InRange(positions[n], 1, 31);
                Assert.Equal(row[positions[n]], lab[^1]);
                Assert.All(lab.Take(32), l => Assert.Equal(TokenBatch.Ignore, l));
                Assert.All(Enumerable.Range(1, 31).Where(j => j != positions[n]), j => Assert.InRange(row[j], 2, 9));   // filler
            }
        }
        Assert.Equal(10, task.NeedleClasses);
        Assert.Equal(1, task.PositionAt(0));
        Assert.Equal(31, task.PositionAt(1));
    }

    [Fact]
    public void NeedleTaskRejectsBadInput()
    {
        Assert.Equal("VocabSize", Assert.Throws<ArgumentException>(() => new S2NeedleTask(VocabSize: 5).Generate(1, 0)).ParamName);
        Assert.Equal("Length", Assert.Throws<ArgumentException>(() => new S2NeedleTask(Length: 3).Generate(1, 0)).ParamName);
        Assert.Equal("count", Assert.Throws<ArgumentException>(() => new S2NeedleTask().Generate(0, 0)).ParamName);
        Assert.Equal("depth", Assert.Throws<ArgumentException>(() => new S2NeedleTask().PositionAt(1.5)).ParamName);
        Assert.Equal("depth", Assert.Throws<ArgumentException>(() => new S2NeedleTask().PositionAt(double.NaN)).ParamName);
    }

    /// <summary>Off-stride ⇔ the homogeneous pattern's last query block does not read the needle's block.</summary>
    [Fact]
    public void OffStrideIsWhatTheHomogeneousPatternCannotRead()
    {
        var c = S2Experiment.Config.Smoke.Needle;
        var homo = S2Pattern.LocalStride(c.Heads, c.Length, c.Block, c.LocalBlocks, c.VertStride, homoHead: true);
        int last = (c.Length - 1) / c.Block;
        int off = 0;
        for (int p = 1; p < c.Length - 1; p++)
        {
            bool blind = Enumerable.Range(0, c.Heads).All(h => !homo.Allows(h, last, p / c.Block));
            Assert.Equal(blind, S2NeedleTraining.OffStride(c, p));
            off += blind ? 1 : 0;
        }
        Assert.InRange(off, 1, c.Length - 3);
        Assert.Equal(8, c.Depths.Length);
        Assert.Equal(new[] { 0.0, 1.0 }, new[] { c.Depths[0], c.Depths[^1] });
    }

    [Fact]
    public void MixersOfTheVariants()
    {
        var c = S2Experiment.Config.Smoke.Needle;
        using var homo = (S2SelfAttention)S2NeedleTraining.Mixer("homogeneous", c);
        using var het = (S2SelfAttention)S2NeedleTraining.Mixer("heterogeneous", c);
        using var hybrid = (S2SelfAttention)S2NeedleTraining.Mixer("hybrid", c);
        Assert.Single(homo.Residues.Distinct());
        Assert.Equal(c.Heads, het.Residues.Distinct().Count());
        Assert.Null(hybrid.Residues[^1]);
        Assert.Equal("variant", Assert.Throws<ArgumentException>(() => S2NeedleTraining.Mixer("sparse", c)).ParamName);
    }

    [Fact]
    public void DecodeBenchmarkAgreesAndCountsBytes()
    {
        var rows = S2Benchmark.Decode(new[] { 37 }, heads: 2, dim: 4, block: 4, local: 2, stride: 2, torch.CPU);
        Assert.Equal(2, rows.Count);
        var (full, pruned) = (rows[0], rows[1]);
        Assert.Equal(S2Benchmark.FullCache, full.Cache);
        Assert.Equal(37L * 2 * 2 * 4 * sizeof(float), full.KvBytes);
        using var mixer = new S2SelfAttention(8, 2, 4, 2, 2);
        long held = mixer.HeldTokens(0, 37) + mixer.HeldTokens(1, 37);
        Assert.Equal(held * 2 * 4 * sizeof(float), pruned.KvBytes);
        Assert.Equal(held / 2.0, pruned.HeldPerHead);
        Assert.True(pruned.MaxAbsVsFull < 1e-5, $"pruned vs full {pruned.MaxAbsVsFull}");
        Assert.Equal(2, S2Benchmark.ToDataFrame(rows).Rows.Count);
    }
}
