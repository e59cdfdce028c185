using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Flowformer;

/// <summary>
/// Flow-Attention (Wu et al. 2022, thuml/Flowformer <c>Flow_Attention.py</c>): attention as flow from sources (keys,
/// values) to sinks (queries). Conserving the flow at both ends gives a competition over sources (a softmax) and an
/// allocation gate on sinks (a sigmoid) in linear time — normal and causal variants. The module takes unprojected
/// queries [B, n, d_in], keys and values [B, m, d_in] and returns [B, n, d_out] like the repo's module; the static
/// functions work on projected q, k [B, T, H, D] (before σ) and v [B, m, H, Dv].
/// </summary>
/// <remarks>
/// With the flows of <see cref="FlowWeights"/> (φ = σ):
///   normal   R_i = A_i · (φq_i / I_i)ᵀ Σ_j φk_j (C_j v_j)ᵀ                    = A ⊙ [(φQ/I)(φKᵀ(C ⊙ V))]   O((n+m)·D·Dv)
///   causal   R_i = A_i · (φq_i / (I_i (i+1)))ᵀ Σ_{j≤i} φk_j (C_j v_j)ᵀ        (the engine's causal dot product)
/// then y = Dropout(W_o R + b_o) (dropout 0.05 as in the repo). The bracketed products run on the shared linear-attention
/// engine with the identity map (<see cref="LinearAttention.Bidirectional"/>, <see cref="LinearAttention.Run"/>).
/// </remarks>
public sealed class FlowAttention : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    /// <summary>ε of the repo (1e-6).</summary>
    public const double DefaultEps = 1e-6;

    readonly Linear query_projection, key_projection, value_projection, out_projection;
    readonly Dropout dropout;

    /// <param name="dModel">d: input width, projected width and output width (the repo's d_input = d_model = d_output).</param>
    /// <param name="heads">H; must divide d.</param>
    /// <param name="causal">the causal variant (prefix sums; needs n = m).</param>
    /// <param name="eps">ε of the flows.</param>
    /// <param name="dropout">dropout after the output projection (repo: 0.05).</param>
    public FlowAttention(int dModel, int heads, bool causal, double eps = DefaultEps, double dropout = 0.05) : base(nameof(FlowAttention))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        if (dModel % heads != 0) throw new ArgumentException($"heads {heads} must divide dModel {dModel}.", nameof(heads));
        if (!(eps > 0)) throw new ArgumentException($"eps must be positive, got {eps}.", nameof(eps));
        if (!(dropout >= 0 && dropout < 1)) throw new ArgumentException($"dropout must be in [0, 1), got {dropout}.", nameof(dropout));
        (DModel, Heads, Causal, Eps) = (dModel, heads, causal, eps);
        query_projection = nn.Linear(dModel, dModel);
        key_projection = nn.Linear(dModel, dModel);
        value_projection = nn.Linear(dModel, dModel);
        out_projection = nn.Linear(dModel, dModel);
        this.dropout = nn.Dropout(dropout);
        RegisterComponents();
    }

    public int DModel { get; }
    public int Heads { get; }
    public bool Causal { get; }
    public double Eps { get; }
    /// <summary>d/H.</summary>
    public int HeadDim => DModel / Heads;
    /// <summary>The engine form of the causal dot product (all give the same numbers).</summary>
    public LinearForm Form { get; set; } = LinearForm.Chunked;
    /// <summary>Chunk length of the chunked form.</summary>
    public int ChunkSize { get; set; } = 64;

    /// <summary>queries [B, n, d], keys and values [B, m, d] → [B, n, d]; causal needs n = m.</summary>
    public override Tensor forward(Tensor queries, Tensor keys, Tensor values)
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Project(queries, keys, values);
        var r = Attend(q, k, v, Causal, Eps, Form, ChunkSize);                          // [B, n, H, d/H]
        var y = out_projection.call(r.reshape(queries.shape[0], queries.shape[1], DModel));
        return dropout.call(y).MoveToOuterDisposeScope();
    }

    /// <summary>The projected q [B, n, H, d/H], k, v [B, m, H, d/H] (before σ), in the caller's scope.</summary>
    public (Tensor Q, Tensor K, Tensor V) Project(Tensor queries, Tensor keys, Tensor values)
    {
        Guard.Rank(queries, 3, nameof(queries), "B, n, d");
        Guard.Rank(keys, 3, nameof(keys), "B, m, d");
        Guard.Rank(values, 3, nameof(values), "B, m, d");
        Guard.Dim(queries, 2, DModel, nameof(queries), "width");
        Guard.Dim(keys, 2, DModel, nameof(keys), "width");
        Guard.Dim(values, 2, DModel, nameof(values), "width");
        long b = queries.shape[0], n = queries.shape[1], m = keys.shape[1];
        if (values.shape[0] != keys.shape[0] || values.shape[1] != m)
            throw new ArgumentException($"values {Guard.ShapeText(values)} must match keys {Guard.ShapeText(keys)} in batch and length.", nameof(values));
        if (keys.shape[0] != b)
            throw new ArgumentException($"keys {Guard.ShapeText(keys)} must match queries {Guard.ShapeText(queries)} in batch.", nameof(keys));
        if (Causal && m != n)
            throw new ArgumentException(
                $"causal flow attention needs as many keys as queries, got queries {Guard.ShapeText(queries)}, keys {Guard.ShapeText(keys)}.", nameof(keys));
        return (query_projection.call(queries).view(b, n, Heads, HeadDim), key_projection.call(keys).view(b, m, Heads, HeadDim),
                value_projection.call(values).view(b, m, Heads, HeadDim));
    }

    /// <summary>An empty decoding state (causal only: the normal variant's flows need the whole sequence).</summary>
    public FlowStreamState NewState(long batch, ScalarType dtype, Device device)
    {
        if (!Causal)
            throw new InvalidOperationException("only causal Flow-Attention can decode token by token: the normal variant's flows sum over every key.");
        return new FlowStreamState(batch, Heads, HeadDim, dtype, device, Eps);
    }

    /// <summary>One token of self-attention: x_t [B, d] → y_t [B, d], the causal forward's output at this position.</summary>
    public Tensor Step(Tensor xT, FlowStreamState state)
    {
        Guard.Rank(xT, 2, nameof(xT), "B, d");
        ArgumentNullException.ThrowIfNull(state);
        if (!Causal) throw new InvalidOperationException("only causal Flow-Attention can decode token by token.");
        using var scope = NewDisposeScope();
        var x = xT.unsqueeze(1);
        var (q, k, v) = Project(x, x, x);                                                // [B, 1, H, D]
        var r = state.Step(q.squeeze(1), k.squeeze(1), v.squeeze(1));                   // [B, H, D]
        return dropout.call(out_projection.call(r.reshape(xT.shape[0], DModel))).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Flow-Attention of projected q [B, n, H, D], k [B, m, H, D] (before σ) and v [B, m, H, Dv] → R [B, n, H, Dv] in q's
    /// dtype. Causal (n = m): the engine's causal dot product by <paramref name="form"/>; normal: its bidirectional product.
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, bool causal, double eps = DefaultEps, LinearForm form = LinearForm.Chunked, int chunkSize = 64)
    {
        ValidateQk(q, k, causal, eps);
        LinearAttention.ValidateQkv(q, k, v, causal);
        using var scope = NewDisposeScope();
        using var w = FlowWeights.Compute(q, k, causal, eps);
        var qs = w.ScaledQueries().permute(0, 2, 1, 3);                                  // φq_i / I_i (/(i+1) causal)  [B, n, H, D]
        var ks = w.PhiK.permute(0, 2, 1, 3);                                             // φk_j                        [B, m, H, D]
        var vc = v.to(qs.dtype) * w.Competition.transpose(1, 2).unsqueeze(-1);           // C_j v_j                     [B, m, H, Dv]
        var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.Identity, Normalize = false, ChunkSize = chunkSize };
        Tensor r;
        if (causal)
        {
            using var res = LinearAttention.Run(form, qs, ks, vc, options: options);     // Σ_{j≤i} (q′_i·φk_j) C_j v_j
            r = res.Output.alias();
        }
        else r = LinearAttention.Bidirectional(qs, ks, vc, options);                     // (φQ/I)(φKᵀ(C ⊙ V))
        r = r * w.Allocation.transpose(1, 2).unsqueeze(-1);                              // ⊙ A_i
        return r.to(q.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The implied attention matrix W [B, H, n, m] with R = W V: W_ij = A_i · (φq_i·φk_j)/I_i′ · C_j (I′ = I, or I·(i+1)
    /// causal, and W_ij = 0 for j &gt; i). O(n·m): for plots and tests. Rows are not normalised (Σ_j W_ij ≈ A_i·C̄).
    /// </summary>
    public static Tensor Materialize(Tensor q, Tensor k, bool causal, double eps = DefaultEps)
    {
        ValidateQk(q, k, causal, eps);
        using var scope = NewDisposeScope();
        using var w = FlowWeights.Compute(q, k, causal, eps);
        var weights = w.ScaledQueries().matmul(w.PhiK.transpose(-2, -1));                // (φq_i/I_i′)·φk_j
        if (causal) weights = weights.tril();                                            // j ≤ i
        weights = weights * w.Competition.unsqueeze(-2) * w.Allocation.unsqueeze(-1);    // · C_j · A_i
        return weights.MoveToOuterDisposeScope();
    }

    /// <summary>q [B, n, H, D] and k [B, m, H, D]: ranks, dtype, device, batch/heads/dim, causal n = m, ε &gt; 0.</summary>
    internal static void ValidateQk(Tensor q, Tensor k, bool causal, double eps)
    {
        Guard.Rank(q, 4, nameof(q), "B, n, H, D");
        Guard.Rank(k, 4, nameof(k), "B, m, H, D");
        Guard.FloatingPoint(q, nameof(q));
        Guard.SameDtype(q, nameof(q), k, nameof(k));
        Guard.SameDevice(q, nameof(q), k, nameof(k));
        if (k.shape[0] != q.shape[0] || k.shape[2] != q.shape[2] || k.shape[3] != q.shape[3])
            throw new ArgumentException($"k {Guard.ShapeText(k)} must match q {Guard.ShapeText(q)} in batch, heads and head dim.", nameof(k));
        if (causal && k.shape[1] != q.shape[1])
            throw new ArgumentException($"causal flow attention needs as many keys as queries, got q {Guard.ShapeText(q)}, k {Guard.ShapeText(k)}.", nameof(k));
        if (q.shape[1] == 0 || k.shape[1] == 0 || q.shape[3] == 0)
            throw new ArgumentException($"q and k need at least one token and one dim (q {Guard.ShapeText(q)}, k {Guard.ShapeText(k)}).", nameof(q));
        if (!(eps > 0)) throw new ArgumentException($"eps must be positive, got {eps}.", nameof(eps));
    }
}
