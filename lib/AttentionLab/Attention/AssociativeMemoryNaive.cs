using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// The naive twin of <see cref="AssociativeMemory"/>: a plain token loop in which every inner gradient ∇_W ℓ comes from
/// TorchSharp autograd (create_graph, so the outer gradients flow through it), not from a closed form. With
/// chunk = 1 it is the exact sequential definition; with chunk c &gt; 1 it is the chunked form's
/// definition (every gradient of a chunk taken at the memory the chunk started with), still token by token.
/// </summary>
/// <remarks>
/// For t = 0 … T−1 (W_c: the memory at the start of t's chunk; W_c = W_{t−1} when c = 1):
///   y_t = M(q_t; W_{t−1}),   g_t = autograd ∂/∂W_c Σ_{b,h} ℓ(M(k_t; W_c), v_t),
///   S_t = η_t S_{t−1} − θ_t g_t,   A_t = canon((1 − α_t) A_{t−1} + S_t),   W_t = R(A_t).
/// The loss is summed over batch rows and heads: each (b, h) owns its slice of W, so the gradient of the sum is every
/// slice's own gradient.
/// </remarks>
public static class AssociativeMemoryNaive
{
    /// <summary>Outputs and final state by the token loop with autograd gradients. Arguments as <see cref="AssociativeMemory.Recurrent"/>.</summary>
    /// <param name="q">queries [B, T, H, D].</param>
    /// <param name="k">keys [B, T, H, D].</param>
    /// <param name="v">values [B, T, H, Dv].</param>
    /// <param name="gates">θ, η, α, δ, each [B, T, H] (η, α, δ optional).</param>
    /// <param name="h0">start state, or null: a zero linear memory.</param>
    /// <param name="options">architecture, bias, retention (its chunk size is not used: see <paramref name="chunk"/>).</param>
    /// <param name="chunk">1: the exact recurrence; c &gt; 1: gradients at each chunk's start memory (the chunked form's definition).</param>
    public static AssociativeMemoryResult Run(Tensor q, Tensor k, Tensor v, MemoryGates gates, MemoryState? h0 = null,
        AssociativeMemoryOptions? options = null, int chunk = 1)
    {
        options ??= AssociativeMemoryOptions.Default;
        AssociativeMemory.Validate(q, k, v, gates, h0, options);
        if (chunk < 1) throw new ArgumentException($"chunk must be ≥ 1, got {chunk}.", nameof(chunk));
        using var scope = NewDisposeScope();
        using var grad = torch.enable_grad();
        long bsz = q.shape[0], t = q.shape[1], heads = q.shape[2];
        Tensor[] a = h0 is null ? [torch.zeros(new[] { bsz, heads, v.shape[3], q.shape[3] }, dtype: q.dtype, device: q.device)] : [.. h0.Weights];
        Tensor[]? s = gates.Eta is null ? null : h0?.Momentum is { } m0 ? [.. m0] : a.Select(x => torch.zeros_like(x)).ToArray();
        Tensor[] atChunkStart = [];
        var outputs = new List<Tensor>();
        for (long i = 0; i < t; i++)
        {
            var w = a.Select(options.Retention.Read).ToArray();                         // W_{t−1}
            if (i % chunk == 0)                                                          // a new chunk: gradients at this memory from now on
                atChunkStart = w.Select(GraphNode).ToArray();
            var qt = q.select(1, i); var kt = k.select(1, i); var vt = v.select(1, i);   // [B, H, ·]
            outputs.Add(Memory(options, w, qt));                                         // y_t = M(q_t; W_{t−1})
            var loss = options.Bias.Loss(Memory(options, atChunkStart, kt), vt, gates.Delta?.select(1, i)).sum();
            var g = Gradients.Of([loss], atChunkStart, retainGraph: true, createGraph: true);    // ∇_W ℓ by autograd
            var theta = gates.Theta.select(1, i);
            for (int m = 0; m < a.Length; m++)
            {
                var update = -Expand(theta) * g[m];                                      // −θ_t ∇ℓ
                if (s is not null) update = s[m] = Expand(gates.Eta!.select(1, i)) * s[m] + update;   // S_t = η_t S_{t−1} − θ_t ∇ℓ
                var kept = gates.Alpha is null ? a[m] : (1 - Expand(gates.Alpha.select(1, i))) * a[m];
                a[m] = options.Retention.Canonical(kept + update);                      // A_t = (1 − α_t) A_{t−1} + S_t
            }
        }
        var output = torch.stack(outputs, 1);                                            // [B, T, H, Dv]
        return new AssociativeMemoryResult(output, new MemoryState(a, s)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The memory as a node autograd can differentiate at, so that ∇_W ℓ is the partial derivative in W with k and v held
    /// fixed. A tensor with a gradient history is cloned: differentiating at the tensor itself would add every other path
    /// from it to the loss (MAC's keys are computed from the memory's earlier reads), and a leaf that requires grad may be a
    /// view made under no_grad of a parameter (the learned start memory expanded over the batch in an inference call), which
    /// autograd never reaches (its gradient goes to the parameter). The clone keeps the outer gradient flowing to the
    /// memory. A tensor without grad becomes a fresh leaf.
    /// </summary>
    static Tensor GraphNode(Tensor w) => w.requires_grad ? w.clone() : w.detach().requires_grad_(true);

    /// <summary>M(x; W) for one token per (b, h): x [B, H, D], weights [B, H, out, in] → [B, H, Dv], written plainly.</summary>
    static Tensor Memory(AssociativeMemoryOptions o, Tensor[] w, Tensor x)
    {
        Tensor Times(Tensor m, Tensor u) => torch.einsum("bhoi,bhi->bho", m, u);
        if (o.Architecture == MemoryArchitecture.Linear) return Times(w[0], x);
        var z = Times(w[0], x);
        var hidden = o.Activation == MemoryActivation.Gelu ? torch.nn.functional.gelu(z) : torch.nn.functional.silu(z);
        var y = Times(w[1], hidden);
        if (o.LayerNorm) y = torch.nn.functional.layer_norm(y, [y.shape[^1]], eps: AssociativeMemory.LayerNormEps);
        return o.Residual ? x + y : y;
    }

    static Tensor Expand(Tensor gate) => gate.unsqueeze(-1).unsqueeze(-1);              // [B, H] → [B, H, 1, 1]
}
