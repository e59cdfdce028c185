using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Based;

/// <summary>The memories the training-free probe compares.</summary>
public enum ProbeMixer
{
    /// <summary>Softmax attention over every stored pair (a KV cache: state grows with N).</summary>
    Softmax,
    /// <summary>BASED's Taylor linear attention, normalised (state (1 + d′ + d′(d′+1)/2)·(dv + 1), packed).</summary>
    Taylor,
    /// <summary>Plain linear attention φ(x) = x, unnormalised (the denominator can vanish).</summary>
    Identity,
    /// <summary>Linear attention with φ = elu + 1, normalised (Katharopoulos et al.).</summary>
    EluPlusOne,
    /// <summary>Softmax over the last w stored pairs only (sliding window).</summary>
    SlidingWindow,
}

/// <summary>
/// The training-free associative-memory probe of the BASED spec: store N random pairs (k ∈ ℝ^{d′}, v ∈ ℝ^{dv}) in a
/// memory, query it with every stored key, and decode each read-out to the stored value it is closest to (cosine
/// similarity, so unnormalised maps are not penalised for scale). Recall = share of queries decoded to their own value.
/// The state each memory needs is the x axis of the recall-vs-state Pareto curve.
/// </summary>
/// <remarks>
/// read-out o_i = Σ_j w(k_i, k_j) v_j with w = softmax_j(k_i·k_j/√d′) (softmax, sliding window: j ≥ N − w only),
/// K(k_i, k_j)/Σ_j K (Taylor, elu+1) or k_i·k_j (identity). Decoded ĵ = argmax_j cos(o_i, v_j); recall = mean [ĵ = i].
/// Keys and values are N(0, I); each trial draws new ones from one seeded generator.
/// </remarks>
public static class RecallProbe
{
    /// <summary>Recall of <paramref name="mixer"/> with <paramref name="nPairs"/> stored pairs, averaged over trials.</summary>
    /// <param name="mixer">the memory.</param>
    /// <param name="featureDim">d′: width of the keys (the Taylor map's input).</param>
    /// <param name="nPairs">N stored pairs.</param>
    /// <param name="window">w of <see cref="ProbeMixer.SlidingWindow"/> (ignored otherwise).</param>
    /// <param name="dv">width of the values.</param>
    /// <param name="trials">independent draws, run as one batch.</param>
    /// <param name="seed">seed of the draws.</param>
    public static double Capacity(ProbeMixer mixer, int featureDim, int nPairs, int window = 64, int dv = 16, int trials = 20, int seed = 0)
    {
        Guard.Positive(featureDim, nameof(featureDim));
        Guard.Positive(nPairs, nameof(nPairs));
        Guard.Positive(window, nameof(window));
        Guard.Positive(dv, nameof(dv));
        Guard.Positive(trials, nameof(trials));
        if (!Enum.IsDefined(mixer)) throw new ArgumentException($"unknown probe mixer {(int)mixer}.", nameof(mixer));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var gen = new Generator((ulong)seed);
        var k = torch.randn(new long[] { trials, nPairs, 1, featureDim }, generator: gen, dtype: ScalarType.Float64);
        var v = torch.randn(new long[] { trials, nPairs, 1, dv }, generator: gen, dtype: ScalarType.Float64);
        var o = ReadOut(mixer, k, v, window);                                             // [trials, N, 1, dv]
        var on = nn.functional.normalize(o.squeeze(2), p: 2, dim: -1);
        var vn = nn.functional.normalize(v.squeeze(2), p: 2, dim: -1);
        var decoded = on.matmul(vn.transpose(1, 2)).argmax(-1);                           // ĵ = argmax_j cos(o_i, v_j)
        var truth = torch.arange(nPairs).unsqueeze(0).expand(trials, nPairs);
        return decoded.eq(truth).to(ScalarType.Float64).mean().item<double>();
    }

    /// <summary>o [B, N, 1, dv]: every stored key read back from the memory of all N pairs.</summary>
    static Tensor ReadOut(ProbeMixer mixer, Tensor k, Tensor v, int window)
    {
        long n = k.shape[1];
        int d = (int)k.shape[3];
        LinearAttentionOptions Linear(IFeatureMap map, bool normalize) => new() { FeatureMap = map, Normalize = normalize, Eps = BasedAttention.DefaultEps };
        switch (mixer)
        {
            case ProbeMixer.Softmax:
                using (var r = ReferenceAttention.Softmax(k, k, v)) return r.Output.alias();
            case ProbeMixer.SlidingWindow:
                var keep = torch.arange(n).ge(n - window).unsqueeze(0).expand(n, n);       // only the last w pairs are kept
                using (var r = ReferenceAttention.Softmax(k, k, v, mask: keep)) return r.Output.alias();
            case ProbeMixer.Taylor: return LinearAttention.Bidirectional(k, k, v, Linear(FeatureMaps.Taylor(d, packSymmetric: true), true));
            case ProbeMixer.EluPlusOne: return LinearAttention.Bidirectional(k, k, v, Linear(FeatureMaps.EluPlusOne, true));
            default: return LinearAttention.Bidirectional(k, k, v, Linear(FeatureMaps.Identity, false));
        }
    }

    /// <summary>
    /// Floats the memory holds after N pairs: KV cache N·(d′ + dv) (softmax), min(N, w)·(d′ + dv) (window),
    /// F·(dv + 1) for linear memories with the normaliser (F = 1 + d′ + d′(d′+1)/2 for Taylor, d′ otherwise), F·dv for identity.
    /// </summary>
    public static long StateFloats(ProbeMixer mixer, int featureDim, int nPairs, int window = 64, int dv = 16) => mixer switch
    {
        ProbeMixer.Softmax => (long)nPairs * (featureDim + dv),
        ProbeMixer.SlidingWindow => (long)Math.Min(nPairs, window) * (featureDim + dv),
        ProbeMixer.Taylor => FeatureMaps.Taylor(featureDim, packSymmetric: true).FeatureDim * (dv + 1),
        ProbeMixer.EluPlusOne => (long)featureDim * (dv + 1),
        ProbeMixer.Identity => (long)featureDim * dv,
        _ => throw new ArgumentException($"unknown probe mixer {(int)mixer}.", nameof(mixer)),
    };
}
