using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Rcmha;

/// <summary>The exactness checks of the experiment and the tests (float64 toy tensors): each returns the measured gap.</summary>
public static class RcmhaChecks
{
    /// <summary>
    /// <see cref="RelativeScores.Scores"/> in <paramref name="mode"/> against <see cref="RelativeScoresNaive"/> on random float64 q, k, u, v, p
    /// ([B, T, H, D], p with L = T + 2 rows): max |Δ| over the visible scores and the gradients of q, k, u, v, p (loss Σ s ⊙ g over
    /// visible entries), and whether both put exactly −∞ on every j &gt; i and a finite number on every j ≤ i.
    /// </summary>
    public static (double Gap, bool MaskExact) ScoreGap(RelShiftMode mode, int b, int t, int h, int d, int seed = 0, Device? device = null)
    {
        using var scope = NewDisposeScope();
        device ??= torch.CPU;
        var gen = new Generator((ulong)seed);
        Tensor R(params long[] shape) => torch.randn(shape, generator: gen, dtype: float64).to(device).requires_grad_();
        var leaves = new[] { R(b, t, h, d), R(b, t, h, d), R(h, d), R(h, d), R(t + 2, h, d) };
        var fast = RelativeScores.Scores(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], mode);
        var naive = RelativeScoresNaive.Scores(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4]);
        var future = torch.ones(t, t, dtype: ScalarType.Bool, device: device).triu(1);
        bool mask = fast.isneginf().eq(future).all().item<bool>() && naive.isneginf().eq(future).all().item<bool>()
                    && fast.masked_fill(future, 0).isfinite().all().item<bool>();
        var g = torch.randn(fast.shape, generator: gen, dtype: float64).to(device);
        Tensor Visible(Tensor s) => s.masked_fill(future, 0.0);
        double gap = (Visible(fast) - Visible(naive)).abs().max().item<double>();
        var gf = Gradients.Of([(Visible(fast) * g).sum()], leaves);
        var gn = Gradients.Of([(Visible(naive) * g).sum()], leaves);
        foreach (var (a, c) in gf.Zip(gn)) gap = Math.Max(gap, (a - c).abs().max().item<double>());
        return (double.IsNaN(gap) ? double.PositiveInfinity : gap, mask);
    }

    /// <summary>
    /// max |Δ| between the mixer and <see cref="RcmhaNaive.Output"/> over the output and the gradients of x and every parameter
    /// (loss Σ y ⊙ g, fixed random g). <paramref name="x"/> must require grad.
    /// </summary>
    public static double TwinGap(RcmhaAttention mixer, Tensor x, Generator gen)
    {
        ArgumentNullException.ThrowIfNull(mixer);
        ArgumentNullException.ThrowIfNull(x);
        using var scope = NewDisposeScope();
        var leaves = new List<Tensor> { x };
        leaves.AddRange(mixer.parameters());
        var g = torch.randn(x.shape, generator: gen, dtype: x.dtype).to(x.device);
        var fast = mixer.call(x);
        var naive = RcmhaNaive.Output(mixer, x);
        var gFast = Gradients.Of([(fast * g).sum()], leaves, allowUnused: true);
        var gNaive = Gradients.Of([(naive * g).sum()], leaves, allowUnused: true);
        double worst = (fast - naive).abs().max().item<double>();
        foreach (var (a, c) in gFast.Zip(gNaive)) worst = Math.Max(worst, a.numel() == 0 ? 0 : (a - c).abs().max().item<double>());
        return double.IsNaN(worst) ? double.PositiveInfinity : worst;
    }

    /// <summary>A random float64 mixer of <paramref name="variant"/> (u, v and the conv biases randomised so every term is live).</summary>
    public static RcmhaAttention Random(RcmhaVariant variant, int dModel, int heads, int kernel, int seed, Device? device = null)
    {
        torch.manual_seed(seed);
        var mixer = new RcmhaAttention(dModel, heads, variant, kernel);
        mixer.to(float64);
        using (torch.no_grad())
        {
            mixer.ContentBias?.normal_();
            mixer.PositionBias?.normal_();
        }
        if (device is not null) mixer.to(device);
        return mixer;
    }

    /// <summary>
    /// The causality probe on an RCMHA mixer (float64, d = 12, H = 3, w = 3, T = 11): change the inputs after position 5 and
    /// return (max |Δ| of outputs 0 … 5 — exactly 0 when nothing sees the future, max |Δ| of outputs 6 … 10 — nonzero).
    /// </summary>
    public static (double Past, double Future) Causality(Device device, int seed = 0)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var mixer = Random(RcmhaVariant.Rcmha, 12, 3, 3, seed, device);
        var x = torch.randn(new long[] { 2, 11, 12 }, generator: new Generator((ulong)seed + 1), dtype: float64).to(device);
        var changed = x.clone();
        changed.narrow(1, 6, 5).add_(torch.randn(new long[] { 2, 5, 12 }, generator: new Generator((ulong)seed + 2), dtype: float64).to(device));
        var (y, y2) = (mixer.call(x), mixer.call(changed));
        return ((y - y2).narrow(1, 0, 6).abs().max().item<double>(), (y - y2).narrow(1, 6, 5).abs().max().item<double>());
    }

    /// <summary>
    /// Spec §6: delta kernels [0, …, 0, 1] with zero conv bias, W_R = 0 and u = v = 0 make RCMHA equal to position-free MHA:
    /// max |RCMHA − CausalSelfAttention| with the same W_QKV and W_O (float64, d = 12, H = 3, w = 4, T = 10).
    /// </summary>
    public static double ReducesToMha(Device device, int seed = 0)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var rcmha = Random(RcmhaVariant.Rcmha, 12, 3, 4, seed, device);
        using var mha = new CausalSelfAttention(12, 3);
        mha.to(float64).to(device);
        var (cq, ck, cv) = rcmha.Convs!.Value;
        foreach (var conv in new[] { cq, ck, cv })
        {
            conv.Weight.zero_();
            conv.Weight.narrow(2, conv.Kernel - 1, 1).fill_(1.0);                      // delta kernel: Y_t = u_t
            conv.Bias!.zero_();
        }
        rcmha.RelativeWeight!.weight!.zero_();                                          // W_R = 0
        rcmha.ContentBias!.zero_();                                                     // u = 0
        rcmha.PositionBias!.zero_();                                                    // v = 0
        mha.Qkv.weight!.copy_(rcmha.Qkv.weight!);
        mha.Qkv.bias!.copy_(rcmha.Qkv.bias!);
        mha.Proj.weight!.copy_(rcmha.Proj.weight!);
        mha.Proj.bias!.copy_(rcmha.Proj.bias!);
        var x = torch.randn(new long[] { 2, 10, 12 }, generator: new Generator((ulong)seed + 3), dtype: float64).to(device);
        return (rcmha.call(x) - mha.call(x)).abs().max().item<double>();
    }

    /// <summary>max |Step − forward| of a random mixer of <paramref name="variant"/> decoding 9 tokens one by one (float64).</summary>
    public static double StepVsForward(RcmhaVariant variant, Device device, int seed = 0)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var mixer = Random(variant, 10, 2, 3, seed, device);
        var x = torch.randn(new long[] { 2, 9, 10 }, generator: new Generator((ulong)seed + 4), dtype: float64).to(device);
        var full = mixer.call(x);
        using var state = mixer.NewState(2, float64, device);
        var steps = Enumerable.Range(0, 9).Select(t => mixer.Step(x.select(1, t), state)).ToArray();
        return (torch.stack(steps, 1) - full).abs().max().item<double>();
    }
}
