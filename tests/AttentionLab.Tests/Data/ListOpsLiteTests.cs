using AttentionLab.Data;
using TorchSharp;

namespace AttentionLab.Tests.Data;

/// <summary>ListOps-lite: the operators, the layout (one scored label at '='), determinism and bad settings.</summary>
public class ListOpsLiteTests
{
    [Fact]
    public void OperatorsFollowLra()
    {
        Assert.Equal(9, ListOpsLite.Apply(ListOpsLite.Max, new[] { 3, 9, 1 }));
        Assert.Equal(1, ListOpsLite.Apply(ListOpsLite.Min, new[] { 3, 9, 1 }));
        Assert.Equal(3, ListOpsLite.Apply(ListOpsLite.Med, new[] { 3, 9, 1 }));
        Assert.Equal(5, ListOpsLite.Apply(ListOpsLite.Med, new[] { 3, 8, 1, 9 }));   // int(median(1, 3, 8, 9)) = int(5.5)
        Assert.Equal(3, ListOpsLite.Apply(ListOpsLite.Sum, new[] { 4, 9 }));
        Assert.Throws<ArgumentException>(() => ListOpsLite.Apply(ListOpsLite.Close, new[] { 1 }));
    }

    [Fact]
    public void BatchesHaveOneScoredLabelAtTheQueryTokenAndRecomputeFromTheText()
    {
        var task = new ListOpsLite(MaxLength: 40, MaxDepth: 3, MaxArgs: 4);
        using var batch = task.Generate(64, seed: 1);
        using var again = task.Generate(64, seed: 1);
        Assert.True(batch.Tokens.eq(again.Tokens).all().item<bool>());
        Assert.Equal(new long[] { 64, 40 }, batch.Tokens.shape);
        var tokens = batch.Tokens.data<long>().ToArray();
        var labels = batch.Labels.data<long>().ToArray();
        for (int row = 0; row < 64; row++)
        {
            var ids = tokens.Skip(row * 40).Take(40).ToArray();
            var lab = labels.Skip(row * 40).Take(40).ToArray();
            int eq = Array.IndexOf(ids, (long)ListOpsLite.Query);
            Assert.True(eq > 0);
            Assert.Equal(1, lab.Count(l => l != TokenBatch.Ignore));
            Assert.InRange(lab[eq], 0, 9);
            Assert.All(ids.Skip(eq + 1), t => Assert.Equal(ListOpsLite.Pad, t));
            int pos = 0;
            Assert.Equal(lab[eq], Eval(ids, ref pos));
            Assert.Equal(eq, pos);
        }
        Assert.StartsWith("[", ListOpsLite.Render(batch.Tokens, 0));
        Assert.EndsWith("=", ListOpsLite.Render(batch.Tokens, 0));
    }

    static long Eval(long[] ids, ref int pos)
    {
        long t = ids[pos++];
        if (t < 10) return t;
        var args = new List<int>();
        while (ids[pos] != ListOpsLite.Close) args.Add((int)Eval(ids, ref pos));
        pos++;
        return ListOpsLite.Apply((int)t, args);
    }

    [Fact]
    public void BadSettingsNameTheField()
    {
        Assert.Equal("MaxArgs", Assert.Throws<ArgumentException>(() => new ListOpsLite(MaxArgs: 1).Generate(1, 0)).ParamName);
        Assert.Equal("MaxLength", Assert.Throws<ArgumentException>(() => new ListOpsLite(MaxLength: 3).Generate(1, 0)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => new ListOpsLite().Generate(0, 0));
    }
}
