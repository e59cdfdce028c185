using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Moh;

/// <summary>The exactness checks of the experiment and the tests (float64 toy tensors): each returns the measured gap.</summary>
public static class MohChecks
{
    /// <summary>
    /// max |Δ| between the mixer and <see cref="MohNaive.Output"/> over the output and the gradients of x and every parameter,
    /// for loss = Σ y ⊙ g with a fixed random g. <paramref name="x"/> must require grad.
    /// </summary>
    public static double TwinGap(MixtureOfHeadAttention mixer, Tensor x, Generator gen)
    {
        ArgumentNullException.ThrowIfNull(mixer);
        ArgumentNullException.ThrowIfNull(x);
        using var scope = NewDisposeScope();
        var leaves = new List<Tensor> { x };
        leaves.AddRange(mixer.parameters());
        var g = torch.randn(x.shape, generator: gen, dtype: x.dtype).to(x.device);
        var fast = mixer.call(x);
        var naive = MohNaive.Output(mixer, x);
        var gFast = Gradients.Of(new[] { (fast * g).sum() }, leaves, allowUnused: true);
        var gNaive = Gradients.Of(new[] { (naive * g).sum() }, leaves, allowUnused: true);
        double worst = (fast - naive).abs().max().item<double>();
        foreach (var (a, b) in gFast.Zip(gNaive)) worst = Math.Max(worst, a.numel() == 0 ? 0 : (a - b).abs().max().item<double>());
        return double.IsNaN(worst) ? double.PositiveInfinity : worst;
    }

    /// <summary>Spec §6: h_s = H with W_s = 0 is exactly MHA: max |MoH − CausalSelfAttention| with the same W_QKV, W_O.</summary>
    public static double AllSharedIsMha(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(seed);
        using var moh = new MixtureOfHeadAttention(12, 4, shared: 4, topK: 0);
        using var mha = new CausalSelfAttention(12, 4);
        moh.to(float64).to(device);
        mha.to(float64).to(device);
        moh.SharedWeight!.weight!.zero_();                                             // W_s = 0: every shared gate h_s · 1/h_s = 1
        mha.Qkv.weight!.copy_(moh.Qkv.weight!);
        mha.Qkv.bias!.copy_(moh.Qkv.bias!);
        mha.Proj.weight!.copy_(moh.Proj.weight!);
        mha.Proj.bias!.copy_(moh.Proj.bias!);
        var x = torch.randn(new long[] { 2, 9, 12 }, generator: new Generator((ulong)seed + 1), dtype: float64).to(device);
        return (moh.call(x) - mha.call(x)).abs().max().item<double>();
    }

    /// <summary>
    /// Spec §6 on a random mixer (H = 7, h_s = 3, K = 2): (tokens whose routed mask does not hold exactly K ones,
    /// max |Σ routed gates − K|, max |Σ shared gates − h_s|).
    /// </summary>
    public static (long BadMaskRows, double RoutedSumGap, double SharedSumGap) GateSums(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(seed);
        using var moh = new MixtureOfHeadAttention(14, 7, shared: 3, topK: 2);
        moh.to(float64).to(device);
        var x = torch.randn(new long[] { 3, 11, 14 }, generator: new Generator((ulong)seed + 2), dtype: float64).to(device) * 3;
        var r = moh.Route(x);
        long bad = r.RoutedMask.sum(-1).ne(moh.TopK).sum().item<long>();
        double routed = (r.RoutedGates.sum(-1) - moh.TopK).abs().max().item<double>();
        double shared = (r.SharedGates.sum(-1) - moh.Shared).abs().max().item<double>();
        return (bad, routed, shared);
    }

    /// <summary>Spec §6: with W_r = 0 every p = 1/E and L_b = E² mean_i(f_i/E) = Σ_i f_i = K: returns |L_b − K|.</summary>
    public static double UniformBalanceMinusK(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(seed);
        using var moh = new MixtureOfHeadAttention(12, 6, shared: 2, topK: 3);
        moh.to(float64).to(device);
        moh.RouterWeight!.weight!.zero_();
        var x = torch.randn(new long[] { 2, 5, 12 }, generator: new Generator((ulong)seed + 3), dtype: float64).to(device);
        return Math.Abs(moh.Route(x).AuxLoss.item<double>() - moh.TopK);
    }

    /// <summary>max |Step − forward| of a random MoH layer decoding 9 tokens token by token (float64).</summary>
    public static double StepVsForward(Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(seed);
        using var moh = new MixtureOfHeadAttention(10, 5, shared: 1, topK: 2);
        moh.to(float64).to(device);
        var x = torch.randn(new long[] { 2, 9, 10 }, generator: new Generator((ulong)seed + 4), dtype: float64).to(device);
        var full = moh.call(x);
        using var state = moh.NewState(2, float64, device);
        var steps = Enumerable.Range(0, 9).Select(t => moh.Step(x.select(1, t), state)).ToArray();
        return (torch.stack(steps, 1) - full).abs().max().item<double>();
    }
}
