using AttentionLab.Attention;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Aaren;

/// <summary>
/// The naive twins of AarenAttention: the paper's definition written out (explicit weights, loops), float64-capable, never fast.
/// The project's rule: every paper folder keeps its naive twins in a <c>…Naive</c> class of its own file.
/// </summary>
public static class AarenNaive
{

    /// <summary>
    /// The obviously-correct form: the same query at every position, causal softmax attention through
    /// <see cref="ReferenceAttention"/>. Returns outputs [B, T, H, Dv], the weights [B, H, T, T] (row k: the
    /// weights of output k over keys i ≤ k) and the log-sum-exp [B, H, T].
    /// </summary>
    public static AttentionResult Attention(Tensor q, Tensor k, Tensor v, double? scale = null)
    {
        AarenAttention.Validate(q, k, v);
        using var scope = NewDisposeScope();
        var qb = q.dim() == 2 ? q.unsqueeze(0).expand(k.shape[0], -1, -1) : q;    // [B, H, D]
        var qt = qb.unsqueeze(1).expand(-1, k.shape[1], -1, -1);                    // one fixed query per position [B, T, H, D]
        return ReferenceAttention.Softmax(qt, k, v, causal: true, scale: scale ?? 1.0 / Math.Sqrt(k.shape[3]))
            .MoveToOuterDisposeScope();
    }
}
