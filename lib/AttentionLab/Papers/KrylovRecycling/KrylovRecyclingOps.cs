using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.KrylovRecycling;

/// <summary>
/// P03 SKR: Krylov subspace recycling: the method as the paper writes it (fast form). STUB written by environment/tools/new-paper.sh.
/// </summary>
/// <remarks>Put the paper's equations here, each beside the line that computes it. Inputs [B, T, H, D] unless the paper says otherwise.</remarks>
public static class KrylovRecyclingOps
{
    /// <summary>The fast form. STUB: throws until the paper's method is written.</summary>
    public static Tensor Forward(Tensor q, Tensor k, Tensor v)
    {
        Guard.Qkv(q, k, v);
        throw new NotImplementedException("P03 SKR: Krylov subspace recycling: KrylovRecyclingOps.Forward is a stub written by new-paper.sh.");
    }
}
