using AttentionLab.Attention;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.SinkLora;

/// <summary>The exactness checks the run and the tests share: twin gaps, the causality probe, mask rules, LoRA and H2O identities.</summary>
public static class SinkLoraChecks
{
    /// <summary>The three training-time forms of the comparison.</summary>
    public enum Form { S2Roll, S2NoWrap, SinkFixed }

    /// <summary>The mixer of <paramref name="form"/> (no positions unless given).</summary>
    public static GroupAttention Mixer(Form form, int dModel, int heads, int groupSize, int sinks = 4, int? keyDim = null, int? valueDim = null,
        PositionKind positions = PositionKind.None, double ropeScale = 1) => form switch
        {
            Form.S2Roll => new ShiftedSparseAttention(dModel, heads, groupSize, S2Mode.RollWrap, positions, ropeScale: ropeScale, keyDim: keyDim,
                valueDim: valueDim),
            Form.S2NoWrap => new ShiftedSparseAttention(dModel, heads, groupSize, S2Mode.NoWrap, positions, ropeScale: ropeScale, keyDim: keyDim,
                valueDim: valueDim),
            _ => new SinkFixedAttention(dModel, heads, groupSize, sinks, positions, ropeScale: ropeScale, keyDim: keyDim, valueDim: valueDim),
        };

    /// <summary>The mixer's attention core (masked, through its Scores) on q, k, v at positions 0 … T−1: z [B, T, H, Dv].</summary>
    public static Tensor Core(GroupAttention mixer, Tensor q, Tensor k, Tensor v)
    {
        var pos = torch.arange(q.size(1), device: q.device);
        return mixer.Attend(q, k, v, pos, pos).Z;
    }

    /// <summary>
    /// max |Δ| between the masked mixer core and its loop twin over the output and the gradients of q, k, v
    /// (loss Σ z ⊙ w, w fixed random), float64 inputs from <paramref name="gen"/>.
    /// </summary>
    public static double TwinGap(GroupAttention mixer, int batch, int t, int dk, int dv, Generator gen)
    {
        using var scope = NewDisposeScope();
        int h = mixer.Heads;
        Tensor Leaf(long d) => torch.randn(new long[] { batch, t, h, d }, generator: gen, dtype: float64).requires_grad_();
        var (q, k, v) = (Leaf(dk), Leaf(dk), Leaf(dv));
        var w = torch.randn(new long[] { batch, t, h, dv }, generator: gen, dtype: float64);
        var fast = Core(mixer, q, k, v);
        var gf = torch.autograd.grad(new[] { (fast * w).sum() }, new[] { q, k, v });
        var slow = SinkLoraNaive.ForMixer(mixer, q, k, v);
        var gs = torch.autograd.grad(new[] { (slow * w).sum() }, new[] { q, k, v });
        double gap = (fast - slow).abs().max().item<double>();
        for (int i = 0; i < 3; i++) gap = Math.Max(gap, (gf[i] - gs[i]).abs().max().item<double>());
        return gap;
    }

    /// <summary>
    /// The spec's causality probe on the whole mixer (float64, T = 4G): perturb the last token's input and measure the change of
    /// the outputs before it: at positions &lt; s (the roll variant's wrap leak) and at every earlier position.
    /// </summary>
    public static (double EarlyChange, double AnyEarlierChange) CausalityProbe(Form form, int seed = 0)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(seed);
        const int G = 4, T = 4 * G, D = 12, H = 4;
        using var mixer = Mixer(form, D, H, G);
        mixer.to(float64);
        var gen = new Generator((ulong)seed + 11);
        var x = torch.randn(new long[] { 1, T, D }, generator: gen, dtype: float64);
        var y0 = mixer.call(x);
        var x1 = x.clone();
        x1[0, T - 1] += torch.randn(new long[] { D }, generator: gen, dtype: float64);
        var y1 = mixer.call(x1);
        var diff = (y1 - y0).abs().narrow(1, 0, T - 1);
        return (diff.narrow(1, 0, G / 2).max().item<double>(), diff.max().item<double>());
    }

    /// <summary>
    /// The mask rules over several (T, G, H): every row keeps at least one key; S2/SF masks never show a key j &gt; i except the
    /// roll variant's wrap; the sink columns j &lt; n are visible to every row i ≥ j; half of the heads use the plain groups.
    /// Returns the number of violations (0 = all hold).
    /// </summary>
    public static long MaskViolations(int sinks = 4)
    {
        using var scope = NewDisposeScope();
        long bad = 0;
        foreach (var (t, g, h) in new[] { (16, 4, 4), (12, 6, 3), (8, 8, 1), (10, 2, 2), (9, 3, 5) })
        {
            var causal = AttentionMasks.Causal(t, t);
            foreach (var mode in new[] { S2Mode.RollWrap, S2Mode.NoWrap })
            {
                var m = GroupMasks.ShiftedSparse(t, g, h, mode);
                bad += m.any(-1).logical_not().sum().item<long>();                      // empty rows
                if (mode == S2Mode.NoWrap) bad += m.logical_and(causal.logical_not()).sum().item<long>();   // future keys
            }
            var sf = GroupMasks.SinkFixed(t, g, h, sinks);
            bad += sf.any(-1).logical_not().sum().item<long>();
            bad += sf.logical_and(causal.logical_not()).sum().item<long>();
            long n = Math.Min(sinks, t);
            bad += sf.narrow(2, 0, n).logical_not().logical_and(causal.narrow(1, 0, n)).sum().item<long>();   // sink column hidden where j ≤ i
            var plain = GroupMasks.GroupLocal(t, g, false, false, sinks);
            for (int head = 0; head < h / 2; head++) bad += sf[head].ne(plain).sum().item<long>();
        }
        return bad;
    }

    /// <summary>A small RoPE TinyGpt (float64 unless told) for the LoRA and decode identities.</summary>
    public static TinyGpt ToyModel(int seed, ScalarType dtype = ScalarType.Float64, double ropeScale = 1)
    {
        torch.manual_seed(seed);
        var model = new TinyGpt(new TinyGptConfig(Layers: 2, DModel: 16, Heads: 4, VocabSize: 11, Positions: PositionKind.Rope, RopeScale: ropeScale));
        model.to(dtype);
        model.eval();
        return model;
    }

    /// <summary>LoRA on W_QKV and W_O of every layer: B = 0 gives the base logits; with random B the merged weights give the unmerged logits.</summary>
    public static (double ZeroB, double MergedVsUnmerged) LoraIdentities(int seed = 0)
    {
        using var scope = NewDisposeScope();
        using var model = ToyModel(seed);
        var gen = new Generator((ulong)seed + 3);
        var tokens = torch.randint(0, 11, new long[] { 2, 9 }, generator: gen);
        using var noGrad = torch.no_grad();
        var base_ = model.call(tokens);
        var set = Lora.Apply(model, SinkLoraExperiment.LoraTargets(model.Config.Layers), rank: 2, alpha: 4, generator: gen);
        var zero = model.call(tokens);
        foreach (var a in set.Adapters) a.B.copy_(torch.randn(a.B.shape, generator: gen, dtype: float64) * 0.1);
        var unmerged = model.call(tokens);
        set.Merge();
        var merged = model.call(tokens);
        return ((zero - base_).abs().max().item<double>(), (merged - unmerged).abs().max().item<double>());
    }

    /// <summary>
    /// H2O with heavy + recent ≥ T decodes exactly like the plain KV cache and the forward pass (float32, T = 24):
    /// max |Δ| of the logits against both, and the largest cache a small-budget H2O held against its budget.
    /// </summary>
    public static (double VsFullDecode, double VsForward, long MaxHeld, long Budget) H2OIdentities(int seed = 0)
    {
        using var scope = NewDisposeScope();
        const int T = 24;
        using var model = ToyModel(seed, ScalarType.Float32, ropeScale: 0.5);
        var gen = new Generator((ulong)seed + 5);
        var tokens = torch.randint(0, 11, new long[] { 2, T }, generator: gen);
        using var noGrad = torch.no_grad();
        var forward = model.call(tokens);
        Tensor Decode(Func<int, IKvPolicy>? policy, Action<TinyGptState>? watch = null)
        {
            using var state = model.NewState(2, policy);
            var steps = new List<Tensor>();
            for (int t = 0; t < T; t++)
            {
                steps.Add(model.Step(tokens.select(1, t), state));
                watch?.Invoke(state);
            }
            return torch.stack(steps.ToArray(), 1);
        }
        var full = Decode(null);
        var h2o = Decode(_ => new H2OPolicy(T / 2, T / 2));
        long held = 0;
        var small = new H2OPolicy(3, 4);
        Decode(_ => small, s => held = Math.Max(held, MaxCount(s)));
        return ((h2o - full).abs().max().to(float64).item<double>(), (h2o - forward).abs().max().to(float64).item<double>(), held, small.Budget!.Value);
    }

    /// <summary>The most entries any layer's evicting cache holds now.</summary>
    public static long MaxCount(TinyGptState state) =>
        state.Layers.Max(l => l is CausalSelfAttention.PolicyState p ? p.Cache.Count : 0);
}
