using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// The associative-memory core shared by Titans and Miras: a memory M(·; W) per head (linear or a 2-layer MLP) written at
/// test time by gradient steps on an attentional-bias loss, with momentum, a forget gate and a per-token learning rate,
/// and read by queries. Two fast forms with closed-form gradients (no autograd inside): the token recurrence and the
/// chunked (mini-batch) form; the naive twin is <see cref="AssociativeMemoryNaive"/>. Layout [B, T, H, D] like
/// <see cref="LinearAttention"/>.
/// </summary>
/// <remarks>
/// Per head, with W = R(A) the retention's weights (<see cref="Retention"/>), e the attentional bias's ∂ℓ/∂y:
///   y_t = M(q_t; W_{t−1})                                  read first: token t sees only tokens &lt; t (Titans §2, point 1)
///   g_t = ∇_W ℓ(M(k_t; W_{t−1}), v_t)                       closed form below
///   S_t = η_t S_{t−1} − θ_t g_t                             momentum ("surprise"); without η: S_t = −θ_t g_t
///   A_t = (1 − α_t) A_{t−1} + S_t                           forgetting; W_t = R(A_t)
/// Closed-form gradients (y = M(k), e = ∂ℓ/∂y):
///   linear  M(k) = W k:                 ∇_W ℓ = e kᵀ
///   MLP     z = W₁ k, h = σ(z), M(k) = W₂ h (+ k):   ∇_{W₂} ℓ = e hᵀ,  ∇_{W₁} ℓ = ((W₂ᵀ e) ⊙ σ'(z)) kᵀ
///   with LN, M(k) = LN(W₂ h) (+ k), n = LN(o):    e ← (e − mean(e) − n·mean(e ⊙ n)) / σ before the two lines above
/// Chunked form (Titans' parallel training): inside a chunk every gradient is taken at the chunk-start memory W₀, so with
/// u_j = θ_j g_j(W₀) the two linear recurrences unroll to
///   S_i = H_i S₀ − Σ_{j≤i} P^η_{ij} u_j,      A_i = β_i A₀ + γ_i S₀ − Σ_{j≤i} (P^β P^η)_{ij} u_j
/// with P^a_{ij} = Π_{j&lt;l≤i} a_l (lower-triangular, exact cumulative products), β = cumprod(1 − α), H = cumprod(η),
/// γ = P^β H. It equals the recurrence at chunk size 1 only; at larger chunks it is the chunked twin's definition.
/// The outer (model) gradients flow through every inner update: nothing is detached.
/// </remarks>
public static class AssociativeMemory
{
    /// <summary>
    /// Token-by-token recurrence with closed-form gradients.
    /// </summary>
    /// <param name="q">queries [B, T, H, D].</param>
    /// <param name="k">keys [B, T, H, D].</param>
    /// <param name="v">values [B, T, H, Dv].</param>
    /// <param name="gates">θ, η, α, δ, each [B, T, H] (η, α, δ optional).</param>
    /// <param name="h0">start state ([B, H, out, in] accumulators; momentum iff η is given); null: zero linear memory (the MLP needs one).</param>
    /// <param name="options">architecture, bias, retention; null: <see cref="AssociativeMemoryOptions.Default"/>.</param>
    public static AssociativeMemoryResult Recurrent(Tensor q, Tensor k, Tensor v, MemoryGates gates, MemoryState? h0 = null,
        AssociativeMemoryOptions? options = null) => Run(chunked: false, q, k, v, gates, h0, options);

    /// <summary>
    /// Chunked (mini-batch) form: chunks of <see cref="AssociativeMemoryOptions.ChunkSize"/> tokens (the last one may be
    /// shorter), gradients at each chunk's start memory, read-outs with the per-token memories W_{t−1}. Arguments as
    /// <see cref="Recurrent"/>.
    /// </summary>
    public static AssociativeMemoryResult Chunked(Tensor q, Tensor k, Tensor v, MemoryGates gates, MemoryState? h0 = null,
        AssociativeMemoryOptions? options = null) => Run(chunked: true, q, k, v, gates, h0, options);

    /// <summary>Retrieval without an update: y = M(q; R(A)) for q [B, T, H, D] → [B, T, H, Dv].</summary>
    public static Tensor Read(MemoryState state, Tensor q, AssociativeMemoryOptions? options = null)
    {
        options ??= AssociativeMemoryOptions.Default;
        ArgumentNullException.ThrowIfNull(state);
        Guard.Rank(q, 4, nameof(q), "B, T, H, D");
        ValidateState(state, nameof(state), q, q.shape[3], state.Weights[^1].shape[2], momentum: state.Momentum is not null, options);
        using var scope = NewDisposeScope();
        var w = state.Weights.Select(options.Retention.Read).ToArray();
        var y = Apply(options, w, q.permute(0, 2, 1, 3));                            // shared weights over the T queries
        return y.permute(0, 2, 1, 3).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>Parameter count of one head's memory: Dv·D (linear) or Dh·D + Dv·Dh (MLP).</summary>
    public static long ParametersPerHead(MemoryArchitecture architecture, long keyDim, long valueDim, long hiddenDim = 0) =>
        architecture == MemoryArchitecture.Linear ? valueDim * keyDim : hiddenDim * keyDim + valueDim * hiddenDim;

    /// <summary>
    /// Bytes of one head's state for one sequence: the accumulators (and the momentum S when <paramref name="momentum"/>)
    /// in <paramref name="dtype"/> — constant in the number of tokens (the atlas's x axis).
    /// </summary>
    public static long StateBytesPerHead(MemoryArchitecture architecture, long keyDim, long valueDim, long hiddenDim = 0, bool momentum = true,
        ScalarType dtype = ScalarType.Float32)
    {
        Guard.Positive(keyDim, nameof(keyDim)); Guard.Positive(valueDim, nameof(valueDim));
        if (architecture == MemoryArchitecture.Mlp) Guard.Positive(hiddenDim, nameof(hiddenDim));
        long size = dtype switch
        {
            ScalarType.Float64 => 8,
            ScalarType.Float32 => 4,
            ScalarType.Float16 or ScalarType.BFloat16 => 2,
            _ => throw new ArgumentException($"dtype must be floating-point, got {dtype}.", nameof(dtype)),
        };
        return ParametersPerHead(architecture, keyDim, valueDim, hiddenDim) * (momentum ? 2 : 1) * size;
    }

    static AssociativeMemoryResult Run(bool chunked, Tensor q, Tensor k, Tensor v, MemoryGates gates, MemoryState? h0, AssociativeMemoryOptions? options)
    {
        options ??= AssociativeMemoryOptions.Default;
        Validate(q, k, v, gates, h0, options);
        using var scope = NewDisposeScope();
        var (qh, kh, vh, th, et, al, de) = HeadMajor(q, k, v, gates);
        var start = h0 ?? ZeroLinearState(q, v, gates.Eta is not null);
        var a = start.Weights;
        var s = start.Momentum;
        long t = q.shape[1];
        var outputs = new List<Tensor>();
        if (!chunked)
        {
            for (long i = 0; i < t; i++)
            {
                Tensor y;
                (y, a, s) = Step(options, qh.select(2, i), kh.select(2, i), vh.select(2, i), th.select(2, i), et?.select(2, i), al?.select(2, i),
                    de?.select(2, i), a, s);
                outputs.Add(y);
            }
        }
        else
        {
            int c = options.ChunkSize;
            for (long i = 0; i < t; i += c)
            {
                long len = Math.Min(c, t - i);
                Tensor y;
                (y, a, s) = Chunk(options, qh.narrow(2, i, len), kh.narrow(2, i, len), vh.narrow(2, i, len), th.narrow(2, i, len),
                    et?.narrow(2, i, len), al?.narrow(2, i, len), de?.narrow(2, i, len), a, s);
                outputs.Add(y);
            }
        }
        var output = (chunked ? torch.cat(outputs, 2) : torch.stack(outputs, 2)).permute(0, 2, 1, 3).contiguous();   // [B, T, H, Dv]
        return new AssociativeMemoryResult(output, new MemoryState(a, s)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One token, per head: q, k [B, H, D], v [B, H, Dv], gates [B, H]; accumulators and momentum [B, H, out, in].
    /// Returns y_t = M(q_t; W_{t−1}) and the state after the write. Shared by the recurrence and the stream.
    /// </summary>
    internal static (Tensor Y, Tensor[] A, Tensor[]? S) Step(AssociativeMemoryOptions o, Tensor q, Tensor k, Tensor v, Tensor theta, Tensor? eta,
        Tensor? alpha, Tensor? delta, Tensor[] a, Tensor[]? s)
    {
        var w = a.Select(o.Retention.Read).ToArray();                                  // W_{t−1} = R(A_{t−1})
        var y = Apply(o, w, q);                                                         // y_t = M(q_t; W_{t−1})
        var g = TokenGradients(o, w, k, v, delta);                                      // ∇_W ℓ(M(k_t; W_{t−1}), v_t)
        var th = theta.unsqueeze(-1).unsqueeze(-1);
        var keep = alpha is null ? null : (1 - alpha).unsqueeze(-1).unsqueeze(-1);     // 1 − α_t
        var e = eta?.unsqueeze(-1).unsqueeze(-1);
        var nextA = new Tensor[a.Length];
        var nextS = s is null ? null : new Tensor[a.Length];
        for (int i = 0; i < a.Length; i++)
        {
            var step = -th * g[i];                                                       // −θ_t ∇ℓ
            var surprise = nextS is null ? step : e! * s![i] + step;                     // S_t = η_t S_{t−1} − θ_t ∇ℓ
            if (nextS is not null) nextS[i] = surprise;
            var kept = keep is null ? a[i] : keep * a[i];                                // (1 − α_t) A_{t−1}
            nextA[i] = o.Retention.Canonical(kept + surprise);                          // A_t = (1 − α_t) A_{t−1} + S_t
        }
        return (y, nextA, nextS);
    }

    /// <summary>The unrolled momentum and decay recurrences of one chunk (see the remarks): β, P^β P^η, γ, P^η, H.</summary>
    sealed record ChunkMixing(Tensor Beta, Tensor Mix, Tensor? Gamma, Tensor? PEta, Tensor? HEta);

    static ChunkMixing Mixing(Tensor theta, Tensor? eta, Tensor? alpha)
    {
        var keep = alpha is null ? torch.ones_like(theta) : 1 - alpha;                  // 1 − α_j
        var pBeta = Transfer(keep);                                                     // P^β_{ij} = Π_{j<l≤i} (1 − α_l)
        var beta = keep.cumprod(-1);                                                    // β_i = Π_{l≤i} (1 − α_l)
        if (eta is null) return new ChunkMixing(beta, pBeta, null, null, null);         // no momentum: A_i = β_i A₀ − Σ_j P^β_{ij} u_j
        var pEta = Transfer(eta);                                                       // P^η_{ij} = Π_{j<l≤i} η_l
        var hEta = eta.cumprod(-1);                                                     // H_i = Π_{l≤i} η_l
        var gamma = pBeta.matmul(hEta.unsqueeze(-1)).squeeze(-1);                       // γ_i = Σ_m P^β_{im} H_m
        return new ChunkMixing(beta, pBeta.matmul(pEta), gamma, pEta, hEta);            // (P^β P^η)_{ij}: the weight of u_j in A_i
    }

    /// <summary>
    /// One chunk of L tokens (head-major: q, k [B, H, L, D], v [B, H, L, Dv], gates [B, H, L]) from (A₀, S₀): gradients at
    /// W₀ = R(A₀), the unrolled momentum and decay recurrences, read-outs with the per-token memories W_{i−1}.
    /// The linear memory with L2 decay never forms the per-token memories (<see cref="LinearChunk"/>); the others do.
    /// </summary>
    static (Tensor Y, Tensor[] A, Tensor[]? S) Chunk(AssociativeMemoryOptions o, Tensor q, Tensor k, Tensor v, Tensor theta, Tensor? eta,
        Tensor? alpha, Tensor? delta, Tensor[] a0, Tensor[]? s0)
    {
        if (o.Architecture == MemoryArchitecture.Linear && o.Retention is L2DecayRetention)
            return LinearChunk(o, q, k, v, theta, eta, alpha, delta, a0[0], s0?[0]);
        long b = q.shape[0], h = q.shape[1], len = q.shape[2];
        var w0 = a0.Select(o.Retention.Read).ToArray();                                // W₀ = R(A₀)
        var g = TokenGradients(o, w0, k, v, delta);                                     // g_j = ∇ℓ(M(k_j; W₀), v_j)  [B, H, L, out, in]
        var (beta, mix, gamma, pEta, hEta) = Mixing(theta, eta, alpha);
        var th = theta.unsqueeze(-1);                                                   // [B, H, L, 1]
        var nextA = new Tensor[a0.Length];
        var nextS = s0 is null ? null : new Tensor[a0.Length];
        var previous = new Tensor[a0.Length];
        for (int i = 0; i < a0.Length; i++)
        {
            var shape = a0[i].shape;                                                    // [B, H, out, in]
            var u = th * g[i].reshape(b, h, len, -1);                                   // u_j = θ_j g_j, flattened [B, H, L, P]
            var start = a0[i].reshape(b, h, 1, -1);                                     // A₀ [B, H, 1, P]
            var acc = beta.unsqueeze(-1) * start - mix.matmul(u);                       // β_i A₀ − Σ_j (P^β P^η)_{ij} u_j
            if (s0 is not null)
            {
                var sStart = s0[i].reshape(b, h, 1, -1);
                acc = acc + gamma!.unsqueeze(-1) * sStart;                              // + γ_i S₀
                var lastRow = pEta!.select(-2, len - 1).unsqueeze(-1);                  // P^η_{L−1, j}
                var sEnd = hEta!.select(-1, len - 1).unsqueeze(-1) * sStart.squeeze(2) - (lastRow * u).sum(2);   // S_{L−1}
                nextS![i] = sEnd.reshape(shape);
            }
            nextA[i] = o.Retention.Canonical(acc.select(2, len - 1).reshape(shape));   // A after the chunk
            var before = len == 1 ? start : torch.cat(new[] { start, acc.narrow(2, 0, len - 1) }, 2);   // A_{i−1}: A₀, A₀ … A_{L−2}
            previous[i] = o.Retention.Read(before.reshape(b, h, len, shape[2], shape[3]));             // W_{i−1} [B, H, L, out, in]
        }
        var y = Apply(o, previous, q);                                                  // y_i = M(q_i; W_{i−1})
        return (y, nextA, nextS);
    }

    /// <summary>
    /// The linear memory with L2 decay, in matmuls (like a chunk of linear attention), never forming per-token memories:
    /// with e_j = ∂ℓ/∂y at M(k_j; A₀) and the rows of P^β P^η, β, γ shifted down by one (token i reads A_{i−1}),
    ///   y_i = β′_i A₀ q_i + γ′_i S₀ q_i − Σ_j (P^β P^η)′_{ij} θ_j (k_j·q_i) e_j
    ///   A_L = β_{L−1} A₀ + γ_{L−1} S₀ − Eᵀ diag((P^β P^η)_{L−1,·} θ) K,   S_L = H_{L−1} S₀ − Eᵀ diag(P^η_{L−1,·} θ) K.
    /// </summary>
    static (Tensor Y, Tensor[] A, Tensor[]? S) LinearChunk(AssociativeMemoryOptions o, Tensor q, Tensor k, Tensor v, Tensor theta, Tensor? eta,
        Tensor? alpha, Tensor? delta, Tensor a0, Tensor? s0)
    {
        long len = q.shape[2];
        var e = o.Bias.Gradient(k.matmul(a0.transpose(-2, -1)), v, delta);             // e_j = ∂ℓ/∂y at y = A₀ k_j  [B, H, L, Dv]
        var (beta, mix, gamma, pEta, hEta) = Mixing(theta, eta, alpha);
        Tensor Down(Tensor x, double first) =>                                          // x_{i−1} along the token axis, x_{−1} = first
            torch.cat(new[] { torch.full_like(x.narrow(-1, 0, 1), first), x.narrow(-1, 0, len - 1) }, -1);
        var mixPrev = torch.cat(new[] { torch.zeros_like(mix.narrow(-2, 0, 1)), mix.narrow(-2, 0, len - 1) }, -2);   // rows i−1; row 0 = 0
        var scores = q.matmul(k.transpose(-2, -1)) * mixPrev * theta.unsqueeze(-2);    // (P^β P^η)′_{ij} θ_j (q_i·k_j)
        var y = Down(beta, 1).unsqueeze(-1) * q.matmul(a0.transpose(-2, -1)) - scores.matmul(e);   // β′_i A₀ q_i − Σ_j … e_j
        if (s0 is not null) y = y + Down(gamma!, 0).unsqueeze(-1) * q.matmul(s0.transpose(-2, -1));   // + γ′_i S₀ q_i
        var weightA = (mix.select(-2, len - 1) * theta).unsqueeze(-1);                  // (P^β P^η)_{L−1, j} θ_j
        var a = beta.narrow(-1, len - 1, 1).unsqueeze(-1) * a0 - (e * weightA).transpose(-2, -1).matmul(k);
        if (s0 is null) return (y, [a], null);
        a = a + gamma!.narrow(-1, len - 1, 1).unsqueeze(-1) * s0;                       // + γ_{L−1} S₀
        var weightS = (pEta!.select(-2, len - 1) * theta).unsqueeze(-1);                // P^η_{L−1, j} θ_j
        var s = hEta!.narrow(-1, len - 1, 1).unsqueeze(-1) * s0 - (e * weightS).transpose(-2, -1).matmul(k);
        return (y, [a], [s]);
    }

    /// <summary>P_{ij} = Π_{j&lt;l≤i} a_l for i ≥ j, 0 above the diagonal: a [..., L] → [..., L, L] by one cumulative product.</summary>
    internal static Tensor Transfer(Tensor a)
    {
        long len = a.shape[^1];
        var idx = torch.arange(len, device: a.device);
        var below = idx.unsqueeze(1).gt(idx.unsqueeze(0));                              // l > j
        var sizes = a.shape.Append(len).ToArray();
        var x = a.unsqueeze(-1).expand(sizes);                                          // x_{lj} = a_l
        var factors = torch.where(below, x, torch.ones_like(x));                        // a_l where l > j, else 1
        return factors.cumprod(-2).masked_fill(idx.unsqueeze(1).lt(idx.unsqueeze(0)), 0.0);   // row i: Π_{j<l≤i} a_l; 0 where i < j
    }

    /// <summary>
    /// M(x; W). Weights shared by N tokens ([..., out, in] with x [..., N, in]) or one memory per token ([..., N, out, in]
    /// with x [..., N, in], or [..., out, in] with x [..., in]).
    /// </summary>
    internal static Tensor Apply(AssociativeMemoryOptions o, Tensor[] w, Tensor x)
    {
        if (o.Architecture == MemoryArchitecture.Linear) return Lin(w[0], x);          // W x
        var y = Lin(w[1], Activate(o.Activation, Lin(w[0], x)));                        // W₂ σ(W₁ x)
        if (o.LayerNorm) y = Normalise(y).Value;                                        // LN(·)
        return o.Residual ? y + x : y;
    }

    /// <summary>Per-token ∇_W ℓ(M(k; W), v) in closed form, one tensor per weight matrix: [..., (N,) out, in].</summary>
    internal static Tensor[] TokenGradients(AssociativeMemoryOptions o, Tensor[] w, Tensor k, Tensor v, Tensor? delta)
    {
        if (o.Architecture == MemoryArchitecture.Linear)
            return [Outer(o.Bias.Gradient(Lin(w[0], k), v, delta), k)];                 // e kᵀ
        var z = Lin(w[0], k);                                                           // z = W₁ k
        var (hidden, slope) = ActivateWithSlope(o.Activation, z);                       // h = σ(z), σ'(z)
        var y = Lin(w[1], hidden);                                                      // o = W₂ h
        Tensor? inverseStd = null, normalised = null;
        if (o.LayerNorm) (normalised, inverseStd) = Normalise(y);                      // n = LN(o) = (o − μ)/σ
        var output = normalised ?? y;
        if (o.Residual) output = output + k;
        var e = o.Bias.Gradient(output, v, delta);                                      // ∂ℓ/∂y
        if (normalised is not null)                                                     // ∂ℓ/∂o = (e − mean e − n·mean(e ⊙ n)) / σ
            e = (e - e.mean(new long[] { -1 }, keepdim: true) - normalised * (e * normalised).mean(new long[] { -1 }, keepdim: true)) * inverseStd!;
        var back = LinT(w[1], e) * slope;                                               // ∂ℓ/∂z = (W₂ᵀ e) ⊙ σ'(z)
        return [Outer(back, k), Outer(e, hidden)];                                      // ∇W₁ = (∂ℓ/∂z) kᵀ, ∇W₂ = e hᵀ
    }

    /// <summary>Parameter-free LayerNorm over the last dim: n = (o − μ)/σ with σ = √(var + 1e-5) (biased var), and 1/σ.</summary>
    static (Tensor Value, Tensor InverseStd) Normalise(Tensor o)
    {
        var centred = o - o.mean(new long[] { -1 }, keepdim: true);
        var inverseStd = (centred.square().mean(new long[] { -1 }, keepdim: true) + LayerNormEps).rsqrt();
        return (centred * inverseStd, inverseStd);
    }

    /// <summary>ε of the MLP memory's LayerNorm.</summary>
    public const double LayerNormEps = 1e-5;

    static Tensor Outer(Tensor a, Tensor b) => a.unsqueeze(-1) * b.unsqueeze(-2);

    static Tensor Lin(Tensor w, Tensor x) => w.dim() == x.dim() + 1
        ? w.matmul(x.unsqueeze(-1)).squeeze(-1)                                         // one memory per token: W x
        : x.matmul(w.transpose(-2, -1));                                                // shared over N tokens: X Wᵀ

    static Tensor LinT(Tensor w, Tensor e) => w.dim() == e.dim() + 1
        ? e.unsqueeze(-2).matmul(w).squeeze(-2)                                         // Wᵀ e per token
        : e.matmul(w);

    static Tensor Activate(MemoryActivation act, Tensor z) => ActivateWithSlope(act, z).Value;

    /// <summary>σ(z) and σ'(z): GELU z Φ(z), Φ(z) + z φ(z); SiLU z s, s (1 + z (1 − s)) with s = sigmoid(z).</summary>
    static (Tensor Value, Tensor Slope) ActivateWithSlope(MemoryActivation act, Tensor z)
    {
        if (act == MemoryActivation.Gelu)
        {
            var cdf = 0.5 * (1 + (z * Math.Sqrt(0.5)).erf());                           // Φ(z)
            var pdf = (-0.5 * z.square()).exp() / Math.Sqrt(2 * Math.PI);              // φ(z)
            return (z * cdf, cdf + z * pdf);
        }
        var sig = z.sigmoid();
        return (z * sig, sig * (1 + z * (1 - sig)));
    }

    static (Tensor Q, Tensor K, Tensor V, Tensor Theta, Tensor? Eta, Tensor? Alpha, Tensor? Delta) HeadMajor(Tensor q, Tensor k, Tensor v, MemoryGates g) =>
        (q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3), g.Theta.transpose(1, 2), g.Eta?.transpose(1, 2), g.Alpha?.transpose(1, 2),
            g.Delta?.transpose(1, 2));

    static MemoryState ZeroLinearState(Tensor q, Tensor v, bool momentum)
    {
        var w = torch.zeros(new[] { q.shape[0], q.shape[2], v.shape[3], q.shape[3] }, dtype: q.dtype, device: q.device);
        return new MemoryState([w], momentum ? [torch.zeros_like(w)] : null);
    }

    /// <summary>The checks every form (and the naive twin) runs: shapes, dtypes, devices, gate ranges, the start state.</summary>
    internal static void Validate(Tensor q, Tensor k, Tensor v, MemoryGates gates, MemoryState? h0, AssociativeMemoryOptions options)
    {
        ArgumentNullException.ThrowIfNull(gates);
        ArgumentNullException.ThrowIfNull(options);
        Guard.Qkv(q, k, v);
        if (!k.shape.SequenceEqual(q.shape)) throw new ArgumentException($"k {Guard.ShapeText(k)} must have q's shape {Guard.ShapeText(q)}.", nameof(k));
        if (v.shape[0] != q.shape[0] || v.shape[1] != q.shape[1] || v.shape[2] != q.shape[2])
            throw new ArgumentException($"v {Guard.ShapeText(v)} must match q {Guard.ShapeText(q)} in batch, length and heads.", nameof(v));
        if (q.shape[1] == 0) throw new ArgumentException($"q needs at least one token, got {Guard.ShapeText(q)}.", nameof(q));
        if (options.ChunkSize < 1) throw new ArgumentException($"ChunkSize must be ≥ 1, got {options.ChunkSize}.", nameof(options));
        if ((options.Residual || options.LayerNorm) && options.Architecture == MemoryArchitecture.Linear)
            throw new ArgumentException("Residual and LayerNorm apply to the MLP memory only.", nameof(options));
        if (options.Residual && v.shape[3] != q.shape[3])
            throw new ArgumentException($"a residual memory x + MLP(x) needs Dv = D, got v {Guard.ShapeText(v)} and q {Guard.ShapeText(q)}.", nameof(v));
        Gate(gates.Theta, "gates.Theta", q, 0, double.PositiveInfinity);
        if (gates.Eta is not null) Gate(gates.Eta, "gates.Eta", q, 0, 1);
        if (gates.Alpha is not null) Gate(gates.Alpha, "gates.Alpha", q, 0, 1);
        if (options.Bias.NeedsDelta && gates.Delta is null)
            throw new ArgumentException($"the {options.Bias.Name} bias needs a per-token threshold gates.Delta [B, T, H].", nameof(gates));
        if (gates.Delta is not null)
        {
            if (!options.Bias.NeedsDelta)
                throw new ArgumentException($"gates.Delta is given but the {options.Bias.Name} bias takes no threshold.", nameof(gates));
            Gate(gates.Delta, "gates.Delta", q, 0, double.PositiveInfinity);
        }
        if (h0 is null)
        {
            if (options.Architecture == MemoryArchitecture.Mlp) throw new ArgumentException("the MLP memory needs initial weights h0.", nameof(h0));
            return;
        }
        ValidateState(h0, nameof(h0), q, q.shape[3], v.shape[3], gates.Eta is not null, options);
    }

    internal static void ValidateState(MemoryState state, string name, Tensor q, long keyDim, long valueDim, bool momentum, AssociativeMemoryOptions options)
    {
        if (state.Weights.Length != options.WeightCount)
            throw new ArgumentException(
                $"{name} has {state.Weights.Length} weight matrices; the {options.Architecture} memory has {options.WeightCount}.", name);
        if (momentum != (state.Momentum is not null))
            throw new ArgumentException(
                momentum ? $"{name} carries no momentum S but η is given." : $"{name} carries a momentum S but no η is given.", name);
        long hidden = state.Weights[0].shape[2];
        long[][] expected = options.Architecture == MemoryArchitecture.Linear
            ? [[q.shape[0], q.shape[2], valueDim, keyDim]]
            : [[q.shape[0], q.shape[2], hidden, keyDim], [q.shape[0], q.shape[2], valueDim, hidden]];
        for (int i = 0; i < expected.Length; i++)
        {
            var w = state.Weights[i];
            if (w.IsInvalid) throw new ArgumentException($"{name}.Weights[{i}] is a disposed tensor.", name);
            if (!w.shape.SequenceEqual(expected[i]))
                throw new ArgumentException(
                    $"{name}.Weights[{i}] must be [B, H, out, in] = [{string.Join(", ", expected[i])}], got {Guard.ShapeText(w)}.", name);
            if (w.dtype != q.dtype) throw new ArgumentException($"{name}.Weights[{i}] has dtype {w.dtype} but q has {q.dtype}.", name);
            if (w.device.ToString() != q.device.ToString()) throw new ArgumentException($"{name} is on {w.device} but q is on {q.device}.", name);
            if (state.Momentum is { } s && (s[i].IsInvalid || s[i].dtype != q.dtype))
                throw new ArgumentException($"{name}.Momentum[{i}] must be a live tensor of q's dtype {q.dtype}.", name);
        }
    }

    static void Gate(Tensor gate, string name, Tensor q, double low, double high)
    {
        Guard.NotNull(gate, name);
        long[] expected = [q.shape[0], q.shape[1], q.shape[2]];
        if (!gate.shape.SequenceEqual(expected))
            throw new ArgumentException($"{name} must be [B, T, H] = [{string.Join(", ", expected)}], got {Guard.ShapeText(gate)}.", name);
        if (gate.dtype != q.dtype) throw new ArgumentException($"{name} has dtype {gate.dtype} but q has {q.dtype}.", name);
        Guard.SameDevice(q, nameof(q), gate, name);
        if (!Guard.ShouldReadValues(gate)) return;
        using var scope = NewDisposeScope();
        if ((gate.lt(low) | gate.gt(high)).any().item<bool>())                          // NaN passes: NaN in, NaN out
            throw new ArgumentException($"{name} must lie in [{low}, {high}].", name);
    }
}
