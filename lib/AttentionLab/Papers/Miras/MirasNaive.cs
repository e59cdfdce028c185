using AttentionLab.Attention;
using AttentionLab.Core;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Miras;

/// <summary>
/// The naive twin of the Miras mixers: the same projections, conv, gates, output norm and gate, with the memory run by
/// <see cref="AssociativeMemoryNaive"/> (the token loop, inner gradients by autograd) instead of the closed-form fast forms.
/// </summary>
public static class MirasNaive
{
    /// <summary>
    /// <paramref name="mixer"/>'s output for x [B, T, d] with the naive memory: <paramref name="chunk"/> = 1 is the exact
    /// recurrence; c &gt; 1 takes gradients at each chunk's start memory (the chunked form's definition).
    /// </summary>
    public static Tensor Forward(MirasMixer mixer, Tensor x, int chunk = 1)
    {
        ArgumentNullException.ThrowIfNull(mixer);
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        using var scope = NewDisposeScope();
        var (q, k, v) = mixer.Project(x);
        using var r = mixer.Memory(q, k, v, x, (q1, k1, v1, g, h0, o) => AssociativeMemoryNaive.Run(q1, k1, v1, g, h0, o, chunk));
        return mixer.Finish(r.Output, x).MoveToOuterDisposeScope();
    }
}
