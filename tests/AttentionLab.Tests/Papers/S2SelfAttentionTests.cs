using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Papers.S2Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class S2SelfAttentionTests
{
    [Theory]
    [InlineData(1, 1, 2, 4, 2, 2, false, 0)]      // one token
    [InlineData(2, 23, 2, 4, 2, 2, false, 0)]     // T not a multiple of the block
    [InlineData(1, 30, 4, 3, 1, 3, false, 0)]     // diagonal block only, H > s
    [InlineData(2, 41, 3, 4, 2, 4, false, 1)]     // a dense head, H < s (incomplete coverage)
    [InlineData(1, 37, 2, 5, 3, 2, true, 0)]      // homogeneous
    public void PrunedAndFullCacheDecodesReproduceTheForwardPass(int batch, int t, int heads, int block, int local, int stride, bool homo, int dense)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(3);
        using var mixer = new S2SelfAttention(8 * heads, heads, block, local, stride, homoHead: homo, denseHeads: dense);
        mixer.to(ScalarType.Float64);
        var x = torch.randn(batch, t, 8 * heads, dtype: ScalarType.Float64);
        using var noGrad = torch.no_grad();
        var full = mixer.call(x);
        using var pruned = mixer.NewState(batch, ScalarType.Float64, x.device);
        using var whole = mixer.NewFullState(batch, ScalarType.Float64, x.device);
        long perToken = 2L * batch * 8 * sizeof(double);                                     // K and V of one head, one token
        var steps = new List<Tensor>();
        for (int i = 0; i < t; i++)
        {
            var yp = mixer.Step(x.select(1, i), pruned);
            var yf = mixer.Step(x.select(1, i), whole);
            double gap = (yp - yf).abs().max().item<double>();
            Assert.True(gap < 1e-12, $"pruned vs full cache at t = {i}: max |Δ| = {gap}");
            steps.Add(yp);
            // bytes = Σ_h held_h(t) × per-token bytes, and the held count is the formula
            long seen = i + 1;
            Assert.Equal(Enumerable.Range(0, heads).Sum(h => mixer.HeldTokens(h, seen)) * perToken, pruned.Bytes);
            Assert.Equal(seen * heads * perToken, whole.Bytes);
        }
        double err = (torch.stack(steps, 1) - full).abs().max().item<double>();
        Assert.True(err < 1e-10, $"Step vs forward max |Δ| = {err}");
        Assert.Equal(t, pruned.Position);
        Assert.Equal(t, whole.Position);
    }

    /// <summary>Each head holds exactly the keys the next query reads — stride blocks + window — and the closed form counts them.</summary>
    [Theory]
    [InlineData(4, 4, 3, 4, false, 0, 101)]
    [InlineData(3, 8, 2, 4, false, 1, 77)]
    [InlineData(2, 2, 1, 3, true, 0, 40)]
    public void HeldKeysArePatternsNextQueryKeys(int heads, int block, int local, int stride, bool homo, int dense, int t)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(1);
        using var mixer = new S2SelfAttention(4 * heads, heads, block, local, stride, homoHead: homo, denseHeads: dense);
        var mask = mixer.Pattern(t + 1);
        using var state = (S2KvState)mixer.NewState(1, ScalarType.Float32, torch.CPU);
        var x = torch.randn(1, t, 4 * heads);
        for (int i = 0; i < t; i++)
        {
            mixer.Step(x.select(1, i), state);
            long seen = i + 1;
            for (int h = 0; h < heads; h++)
            {
                var expected = Enumerable.Range(0, (int)seen).Where(j => mask.Allows(h, (int)seen / block, j / block)).Select(j => (long)j).ToArray();
                Assert.Equal(expected, state.Heads[h].HeldPositions());
                Assert.Equal(mask.AttendedTokens(h, (int)seen) - 1, mixer.HeldTokens(h, seen));   // the next query's keys minus itself
                Assert.Equal(expected.Length, state.Heads[h].Held);
            }
        }
        // the heterogeneous sparse heads hold fewer than t tokens; a dense head holds all of them
        for (int h = 0; h < heads; h++)
            if (mixer.Residues[h] is null) Assert.Equal(t, state.Heads[h].Held);
            else Assert.True(state.Heads[h].Held < t, $"head {h} holds {state.Heads[h].Held} of {t}");
    }

    [Fact]
    public void HeldTokensMatchesTheSpecsEstimate()
    {
        // n/s + ℓ·b per head (spec §2): exact up to one partial stride block and the partial window
        using var mixer = new S2SelfAttention(64, 4, block: 16, localBlocks: 4, vertStride: 4);
        for (int h = 0; h < 4; h++)
        {
            long held = mixer.HeldTokens(h, 512);
            Assert.InRange(held, 512 / 4 + 4 * 16 - 2 * 16, 512 / 4 + 4 * 16);
        }
        Assert.Equal(new long[] { 176, 160, 160, 160 }, Enumerable.Range(0, 4).Select(h => mixer.HeldTokens(h, 512)));
        Assert.Equal(0, mixer.HeldTokens(0, 0));
        Assert.Equal("head", Assert.Throws<ArgumentException>(() => mixer.HeldTokens(4, 1)).ParamName);
        Assert.Equal("seen", Assert.Throws<ArgumentException>(() => mixer.HeldTokens(0, -1)).ParamName);
    }

    [Fact]
    public void ReadsAgreesWithThePatternAndIsCausal()
    {
        using var mixer = new S2SelfAttention(16, 2, block: 4, localBlocks: 2, vertStride: 2);
        var mask = mixer.Pattern(40);
        for (int h = 0; h < 2; h++)
            for (int qp = 0; qp < 40; qp++)
                for (int kp = 0; kp < 40; kp++)
                    Assert.Equal(kp <= qp && mask.Allows(h, qp / 4, kp / 4), mixer.Reads(h, qp, kp));
        // each head skips some distant blocks: the pattern is sparse, not dense
        Assert.Contains(Enumerable.Range(0, 40), kp => !mixer.Reads(0, 39, kp));
    }

    /// <summary>While a hook listens on hook_pattern the mixer runs its dense masked form: same output, and A is the pattern.</summary>
    [Fact]
    public void HookedPatternIsThePatternAndChangesNothing()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(2);
        using var mixer = new S2SelfAttention(12, 3, block: 3, localBlocks: 2, vertStride: 3, denseHeads: 1);
        mixer.to(ScalarType.Float64);
        var x = torch.randn(2, 29, 12, dtype: ScalarType.Float64);
        using var noGrad = torch.no_grad();
        var plain = mixer.call(x);
        var hook = mixer.named_modules().Single(m => m.name == "hook_pattern").module as AttentionLab.Interp.HookPoint;
        Tensor? seen = null;
        using (hook!.AddHook((a, _) => { seen = a.clone().DetachFromDisposeScope(); return null; }))
        {
            var hooked = mixer.call(x);
            Assert.True((hooked - plain).abs().max().item<double>() < 1e-12, "hooked forward differs");
        }
        using var pattern = seen!;
        Assert.Equal(new long[] { 2, 3, 29, 29 }, pattern.shape);
        Assert.True((pattern.sum(-1) - 1).abs().max().item<double>() < 1e-12, "rows do not sum to 1");
        var a = pattern.data<double>().ToArray();
        for (int h = 0; h < 3; h++)
            for (int i = 0; i < 29; i++)
                for (int j = 0; j < 29; j++)
                    if (!mixer.Reads(h, i, j)) Assert.Equal(0.0, a[((0 * 3 + h) * 29 + i) * 29 + j]);
    }

    [Fact]
    public void DecodingDoesNotLeak()
    {
        using var mixer = new S2SelfAttention(16, 2, block: 2, localBlocks: 1, vertStride: 2);
        using var x = torch.randn(1, 16);
        using var state = mixer.NewState(1, ScalarType.Float32, torch.CPU);
        using (var warm = NewDisposeScope()) for (int i = 0; i < 8; i++) mixer.Step(x, state);    // past the first prune
        LeakCheck.AssertNoLeak(() => { using var noGrad = torch.no_grad(); mixer.Step(x, state).Dispose(); }, "S2SelfAttention.Step (pruned)");
    }

    [Fact]
    public void RejectsBadShapesAndForeignState()
    {
        using var mixer = new S2SelfAttention(16, 2);
        using var x = torch.randn(2, 16);
        var e = Assert.Throws<ArgumentException>(() => mixer.call(x));
        Assert.Equal("x", e.ParamName);
        Assert.Throws<ArgumentException>(() => new S2SelfAttention(15, 2));
        Assert.Equal("denseHeads", Assert.Throws<ArgumentException>(() => new S2SelfAttention(16, 2, denseHeads: 3)).ParamName);
        using var foreign = new AttentionLab.Papers.Aaren.AarenLayer(16, 2).NewState(1, ScalarType.Float32, torch.CPU);
        Assert.Equal("state", Assert.Throws<ArgumentException>(() => mixer.Step(x.narrow(0, 0, 1), foreign)).ParamName);
        using var other = new S2SelfAttention(24, 3).NewState(1, ScalarType.Float32, torch.CPU);
        Assert.Equal("state", Assert.Throws<ArgumentException>(() => mixer.Step(x.narrow(0, 0, 1), other)).ParamName);
    }
}
