using AttentionLab.Attention;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Based;

/// <summary>
/// The naive twins of BasedAttention: the paper's definition written out (explicit weights, loops), float64-capable, never fast.
/// The project's rule: every paper folder keeps its naive twins in a <c>…Naive</c> class of its own file.
/// </summary>
public static class BasedNaive
{

    /// <summary>
    /// The naive twin: the T × T kernel matrix, causally masked and row-normalised,
    /// y = ((K ⊙ tril) V) / ((K ⊙ tril) 1 + ε). Outputs [B, T, H, Dv] in the input dtype (computed in the accumulation dtype).
    /// </summary>
    public static Tensor Attention(Tensor q, Tensor k, Tensor v, double eps = BasedAttention.DefaultEps)
    {
        LinearAttention.ValidateQkv(q, k, v, causal: true);
        using var scope = NewDisposeScope();
        var weights = BasedAttention.Weights(q, k, eps);                                                // [B, H, T, T]
        var vh = v.to(weights.dtype).permute(0, 2, 1, 3);
        return weights.matmul(vh).permute(0, 2, 1, 3).to(q.dtype).contiguous().MoveToOuterDisposeScope();
    }
}
