using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Titans;

/// <summary>
/// The naive twin of the Titans mixers: the same projections, conv and gates, with the memory run by
/// <see cref="AssociativeMemoryNaive"/> (the token loop, gradients by autograd) instead of the closed-form fast forms.
/// </summary>
public static class TitansNaive
{
    /// <summary>
    /// <paramref name="mixer"/>'s output for x [B, T, d] with the naive memory: <paramref name="chunk"/> = 1 is the exact
    /// recurrence; c &gt; 1 takes gradients at each chunk's start memory (the chunked form's definition).
    /// </summary>
    public static Tensor Forward(TitansMemory mixer, Tensor x, int chunk = 1)
    {
        ArgumentNullException.ThrowIfNull(mixer);
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        using var scope = NewDisposeScope();
        var (q, k, v) = mixer.Project(x);
        using var r = mixer.Memory(q, k, v, x, (q1, k1, v1, g, h0, o) => AssociativeMemoryNaive.Run(q1, k1, v1, g, h0, o, chunk));
        var z = r.Output;
        return mixer.Proj.call(z.reshape(z.size(0), z.size(1), -1)).MoveToOuterDisposeScope();
    }

    /// <summary>MAG with the naive memory branch.</summary>
    public static Tensor Forward(TitansMag mag, Tensor x, int chunk = 1)
    {
        ArgumentNullException.ThrowIfNull(mag);
        return mag.Forward(x, u => Forward(mag.Memory, u, chunk));
    }

    /// <summary>MAL with the naive memory layer.</summary>
    public static Tensor Forward(TitansMal mal, Tensor x, int chunk = 1)
    {
        ArgumentNullException.ThrowIfNull(mal);
        return mal.Forward(x, u => Forward(mal.Memory, u, chunk));
    }

    /// <summary>MAC with the naive memory: writes by the twin's token loop, reads by its plainly written M (see <see cref="Read"/>).</summary>
    public static Tensor Forward(TitansMac mac, Tensor x, int chunk = 1)
    {
        ArgumentNullException.ThrowIfNull(mac);
        var options = mac.Memory.Options.Core;
        return mac.Forward(x, (q, k, v, g, h0, o) => AssociativeMemoryNaive.Run(q, k, v, g, h0, o, chunk), (state, q) => Read(state, q, options));
    }

    /// <summary>
    /// y = M(q; W) for q [B, L, H, Dk] with the twin's plainly written memory: its token loop with θ = 0, no momentum and no
    /// forgetting, which reads every token with the start weights and never changes them.
    /// </summary>
    static Tensor Read(MemoryState state, Tensor q, AssociativeMemoryOptions options)
    {
        using var scope = NewDisposeScope();
        long b = q.size(0), t = q.size(1), h = q.size(2), dv = state.Weights[^1].size(2);
        var theta = torch.zeros(new[] { b, t, h }, dtype: q.dtype, device: q.device);
        var v = torch.zeros(new[] { b, t, h, dv }, dtype: q.dtype, device: q.device);
        var r = AssociativeMemoryNaive.Run(q, q, v, new MemoryGates(theta), new MemoryState(state.Weights), options, 1);
        return r.Output.MoveToOuterDisposeScope();
    }
}
