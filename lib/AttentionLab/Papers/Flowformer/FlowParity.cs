using AttentionLab.Attention;
using AttentionLab.Bench;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Flowformer;

/// <summary>
/// Flow-Attention's row of the parity benchmark (<see cref="Parity"/>): causal <see cref="FlowAttention.Attend"/> (the flows,
/// then the engine's chunked causal dot product) against the same algorithm written as bare TorchSharp ops.
/// </summary>
public static class FlowParity
{
    /// <summary>The causal Flow-Attention case at batch 1, <paramref name="heads"/> heads of width <paramref name="dim"/>, float32, chunk 64.</summary>
    public static IReadOnlyList<ParityCase> Cases(int heads = 4, int dim = 64, Device? device = null) =>
    [
        new("Flow-Attention causal (flows + linear engine)",
            (t, grad) => [.. Parity.Qkv(t, heads, dim, device, grad).Take(3), AttentionMasks.Causal(Parity.Chunk, Parity.Chunk, device)
                .to(ScalarType.Float32).view(1, 1, 1, Parity.Chunk, Parity.Chunk)],
            x => [FlowAttention.Attend(x[0], x[1], x[2], causal: true, chunkSize: Parity.Chunk)],
            x => [Bare(Parity.Heads(x[0]), Parity.Heads(x[1]), Parity.Heads(x[2]), x[3]).permute(0, 2, 1, 3).contiguous()],
            "σ(Q), σ(K); I, O, Î, Ô by prefix sums; A = σ(Î), C = (j+1)·softmax-prefix(Ô); chunked (φQ/I′)φKᵀ(C ⊙ V) ⊙ A"
            + Parity.Contiguous),
    ];

    /// <summary>The causal flows and the chunked dot product on head-major q, k, v [B, H, T, ·]; returns [B, H, T, Dv].</summary>
    static Tensor Bare(Tensor q, Tensor k, Tensor v, Tensor tril)
    {
        const double eps = FlowAttention.DefaultEps;
        var (fq, fk) = (torch.sigmoid(q), torch.sigmoid(k));
        var count = torch.arange(1, q.shape[2] + 1, dtype: q.dtype, device: q.device);   // i + 1
        long d = q.shape[3];
        Tensor Dot(Tensor x, Tensor y) => (x * y).sum(-1) + (x.sum(-1) + y.sum(-1)) * eps + d * eps * eps;   // (x+ε)·(y+ε)
        var incoming = Dot(fq, fk.cumsum(2)) / count;
        var outgoing = Dot(fk, fq.cumsum(2)) / count;
        var sink = Dot(fq, (fk / outgoing.unsqueeze(-1)).cumsum(2)) / count;
        var source = (Dot(fk, (fq / incoming.unsqueeze(-1)).cumsum(2)) / count).clamp(-1.0, 1.0);
        var e = source.exp();
        var competition = e / e.cumsum(-1) * count;
        var qs = fq / (incoming * count).unsqueeze(-1);
        var r = ParityBareOps.Chunked(qs, fk, v * competition.unsqueeze(-1), Parity.Chunk, tril, null, null, null, normalize: false, eps: 0);
        return r * torch.sigmoid(sink).unsqueeze(-1);
    }
}
