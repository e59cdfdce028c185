using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.KrylovRecycling;

/// <summary>
/// The naive twin of <see cref="KrylovRecyclingOps"/>: loops and float64, obviously the paper's definition, never fast.
/// STUB written by environment/tools/new-paper.sh: every fast form needs its twin and a test comparing outputs, final
/// states and gradients over awkward shapes (T = 1, odd T and D, chunks that do not divide T).
/// </summary>
public static class KrylovRecyclingNaive
{
    /// <summary>The definition, token by token. STUB: throws until written.</summary>
    public static Tensor Forward(Tensor q, Tensor k, Tensor v)
    {
        Guard.Qkv(q, k, v);
        throw new NotImplementedException("P03 SKR: Krylov subspace recycling: KrylovRecyclingNaive.Forward is a stub written by new-paper.sh.");
    }
}
