using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>Which form of <see cref="LinearAttention"/> computes the causal output (all give the same numbers).</summary>
public enum LinearForm
{
    /// <summary>Quadratic masked form ((φQ φKᵀ) ⊙ D) V: O(T²) memory, one shot.</summary>
    Parallel,
    /// <summary>Token loop over the state: the naive twin, O(T) steps.</summary>
    Recurrent,
    /// <summary>Intra-chunk parallel + inter-chunk state (Lightning Attention-2 / fla chunk form).</summary>
    Chunked,
}

/// <summary>
/// The shared linear-attention engine (BASED, Lightning Attention, Flowformer's causal dot product, …): causal linear
/// attention with a feature map, optional decay (one per head, or a per-token gate), optional normalisation and a carried
/// state, in three forms with identical signatures and identical results. Layout [B, T, H, D] like <see cref="ReferenceAttention"/>.
/// </summary>
/// <remarks>
/// With φ the feature map, λ_h = exp(log λ_h) ∈ [0, 1] per head (1 without decay) and q ← scale·q:
///   S_t = λ_h S_{t−1} + φ(k_t) v_tᵀ          [F, Dv] per head,  S_{−1} = h0.S (0 without h0)
///   z_t = λ_h z_{t−1} + φ(k_t)               [F] per head (normalised form only)
///   o_t = φ(q_t)ᵀ S_t                         or, normalised, φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t + ε)
/// i.e. o_t = Σ_{s≤t} λ^{t−s} (φ(q_t)·φ(k_s)) v_s (+ λ^{t+1} φ(q_t)ᵀ S_{−1}). The final state hT = (S_{T−1}, z_{T−1})
/// continues the sequence: running two halves with the state equals running the whole.
/// Per-token gate: a log-decay shaped [B, T, H] is g_t (data-dependent, e.g. logσ of a projection) and replaces λ_h by
/// λ_t = exp(g_t) per batch row, token and head: S_t = e^{g_t} S_{t−1} + φ(k_t) v_tᵀ (z likewise), so
/// o_t = Σ_{s≤t} e^{Σ_{s&lt;r≤t} g_r} (φ(q_t)·φ(k_s)) v_s (+ e^{Σ_{r≤t} g_r} φ(q_t)ᵀ S_{−1}). g_t = −∞ is a full reset (the
/// state before t is forgotten); g must be ≤ 0, and NaN is refused like a NaN per-head log-decay (both checks read the
/// values on CPU, or everywhere with <see cref="Guard.CheckValuesOnAccelerators"/>; unchecked, a NaN g_t turns every
/// output from t on into NaN). See <see cref="LinearAttentionGatedForms"/> for the stable segment sums.
/// Accumulation: float16/bfloat16 inputs are computed in float32 (φ, scores, states); outputs return in the input dtype
/// and states stay in the accumulation dtype. Log-decays below −10⁴ (−∞ included) are clamped to −10⁴, where λ is 0 in
/// every dtype already.
/// </remarks>
public static class LinearAttention
{
    /// <summary>Quadratic masked form: o = ((φQ φKᵀ) ⊙ D) V (+ the h0 term), D_ij = λ^{i−j} for i ≥ j, built in log space.</summary>
    /// <param name="q">[B, T, H, D]</param>
    /// <param name="k">[B, T, H, D]</param>
    /// <param name="v">[B, T, H, Dv]</param>
    /// <param name="logDecay">
    /// log λ_h per head [H], or a per-token gate g [B, T, H]; ≤ 0 and not NaN (any floating dtype; −∞ allowed: a full reset);
    /// null: no decay.
    /// </param>
    /// <param name="h0">state before the first token (F = the feature map's output dim); z required iff normalised; null: zero.</param>
    /// <param name="options">feature map, normalisation, ε, q scale, chunk size; null: <see cref="LinearAttentionOptions.Default"/>.</param>
    public static LinearAttentionResult Parallel(Tensor q, Tensor k, Tensor v, Tensor? logDecay = null, LinearState? h0 = null,
        LinearAttentionOptions? options = null) =>
        Run(LinearForm.Parallel, q, k, v, logDecay, h0, options);

    /// <summary>Token-by-token recurrence S_t = λ S_{t−1} + φ(k_t) v_tᵀ; o_t = φ(q_t)ᵀ S_t. Arguments as <see cref="Parallel"/>.</summary>
    public static LinearAttentionResult Recurrent(Tensor q, Tensor k, Tensor v, Tensor? logDecay = null, LinearState? h0 = null,
        LinearAttentionOptions? options = null) =>
        Run(LinearForm.Recurrent, q, k, v, logDecay, h0, options);

    /// <summary>
    /// Chunks of <see cref="LinearAttentionOptions.ChunkSize"/> tokens: quadratic inside a chunk, the state carried between
    /// chunks; the chunk need not divide T (the last chunk is shorter). Arguments as <see cref="Parallel"/>.
    /// </summary>
    public static LinearAttentionResult Chunked(Tensor q, Tensor k, Tensor v, Tensor? logDecay = null, LinearState? h0 = null,
        LinearAttentionOptions? options = null) =>
        Run(LinearForm.Chunked, q, k, v, logDecay, h0, options);

    /// <summary>The causal output and final state by the chosen <paramref name="form"/>. Arguments as <see cref="Parallel"/>.</summary>
    public static LinearAttentionResult Run(LinearForm form, Tensor q, Tensor k, Tensor v, Tensor? logDecay = null, LinearState? h0 = null,
        LinearAttentionOptions? options = null)
    {
        options ??= LinearAttentionOptions.Default;
        ValidateCausal(q, k, v, logDecay, h0, options);
        using var scope = NewDisposeScope();
        var acc = AccumulationDtype(q.dtype);
        bool gated = IsTokenGate(logDecay);
        var ld = gated ? null : HeadLogDecay(logDecay, acc);                           // log λ [1, H, 1, 1] or null
        var g = gated ? TokenLogDecay(logDecay!, acc) : null;                          // g [B, H, T] or null
        var s0 = h0?.S.to(acc);
        var z0 = options.Normalize ? h0?.Z!.to(acc) : null;
        bool norm = options.Normalize;
        long t = q.shape[1];
        // The chunked form runs segment by segment (a whole number of chunks each), carrying (S, z) between them: the
        // feature maps and the per-chunk tensors of one segment stay small enough for the CPU's cache (φ of a whole
        // 16k-token sequence with BASED's F = 153 is 40 MB per tensor). Same chunks, same arithmetic.
        long segment = form == LinearForm.Chunked ? Math.Max(1, ChunkedSegmentTokens / options.ChunkSize) * options.ChunkSize : t;
        // Nothing recorded for autograd: the output [B, T, H, Dv] is allocated once and every segment writes its part into it
        // (the chunked form accumulates in place and writes there directly). Recorded: segments are joined by one cat.
        bool track = LinearAttentionForms.Tracks(q, k, v, logDecay, h0?.S, h0?.Z);
        var output = track ? null : torch.empty([q.shape[0], t, q.shape[2], v.shape[3]], dtype: q.dtype, device: q.device);
        var outputs = new List<Tensor>();
        Tensor s = null!;
        Tensor? z = null;
        // Segments by split, not narrow: split's backward is one cat, narrow's builds a zero tensor of the whole input per segment.
        var (qs, ks, vs) = (q.split(segment, 1), k.split(segment, 1), v.split(segment, 1));
        var gates = g?.split(segment, 2);
        for (long start = 0, i = 0; start < t; start += segment, i++)
        {
            long len = Math.Min(segment, t - start);
            var qf = MapHeads(qs[i], acc, options.FeatureMap, options.Scale);          // φ(scale·q) [B, H, L, F]
            var kf = MapHeads(ks[i], acc, options.FeatureMap, 1.0);                    // φ(k)       [B, H, L, F]
            var vh = vs[i].to(acc).permute(0, 2, 1, 3);                                 // v          [B, H, L, Dv]
            var gs = gates?[i];                                                         // this segment's gates
            var destination = output?.narrow(1, start, len).permute(0, 2, 1, 3);        // [B, H, L, Dv] view of the output
            Tensor o;
            (o, s, z) = (form, gs) switch
            {
                (LinearForm.Parallel, null) => LinearAttentionForms.Block(qf, kf, vh, ld, s0, z0, norm, options.Eps),
                (LinearForm.Recurrent, null) => LinearAttentionForms.Recurrent(qf, kf, vh, ld, s0, z0, norm, options.Eps),
                (LinearForm.Chunked, null) => LinearAttentionForms.Chunked(qf, kf, vh, ld, s0, z0, norm, options.Eps, options.ChunkSize,
                    destination),
                (LinearForm.Parallel, { } gg) => LinearAttentionGatedForms.Block(qf, kf, vh, gg, s0, z0, norm, options.Eps),
                (LinearForm.Recurrent, { } gg) => LinearAttentionGatedForms.Recurrent(qf, kf, vh, gg, s0, z0, norm, options.Eps),
                (LinearForm.Chunked, { } gg) => LinearAttentionGatedForms.Chunked(qf, kf, vh, gg, s0, z0, norm, options.Eps, options.ChunkSize,
                    destination),
                _ => throw new ArgumentOutOfRangeException(nameof(form), form, "unknown linear-attention form."),
            };
            if (destination is null) outputs.Add(o);
            else if (!ReferenceEquals(o, destination)) destination.copy_(o);           // copy_ also casts to the input dtype
            (s0, z0) = (s, z);                                                          // the next segment starts from here
        }
        output ??= (outputs.Count == 1 ? outputs[0] : torch.cat(outputs, 2)).permute(0, 2, 1, 3).to(q.dtype).contiguous();   // [B, T, H, Dv]
        return new LinearAttentionResult(output, new LinearState(s.contiguous(), z?.contiguous())).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Non-causal (bidirectional) linear attention: o_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ (/ (φ(q_i)·Σ_j φ(k_j) + ε)), every query
    /// seeing every key; cost O((Tq + Tk)·F·Dv). No decay, no state.
    /// </summary>
    /// <param name="q">[B, Tq, H, D]</param>
    /// <param name="k">[B, Tk, H, D]</param>
    /// <param name="v">[B, Tk, H, Dv]</param>
    /// <param name="options">feature map, normalisation, ε, q scale (chunk size unused).</param>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, LinearAttentionOptions? options = null)
    {
        options ??= LinearAttentionOptions.Default;
        ValidateQkv(q, k, v, causal: false);
        FeatureDim(options.FeatureMap, q);
        using var scope = NewDisposeScope();
        var acc = AccumulationDtype(q.dtype);
        var qf = MapHeads(q, acc, options.FeatureMap, options.Scale);                  // φ(Q) [B, H, Tq, F]
        var kf = MapHeads(k, acc, options.FeatureMap, 1.0);                            // φ(K) [B, H, Tk, F]
        var vh = v.to(acc).permute(0, 2, 1, 3);
        var num = qf.matmul(kf.transpose(-2, -1).matmul(vh));                          // φ(Q) (φ(K)ᵀ V)
        Tensor? den = options.Normalize ? qf.matmul(kf.sum(-2).unsqueeze(-1)).squeeze(-1) : null;   // φ(Q) Σ_j φ(k_j)
        var o = LinearAttentionForms.Finish(num, den, options.Eps);
        return o.permute(0, 2, 1, 3).to(q.dtype).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The explicit weights the linear forms compute implicitly, for probes and hooks (O(Tq·Tk)): κ_ij = φ(scale·q_i)·φ(k_j)
    /// · λ_h^{qPos_i − kPos_j} where key j is visible (kPos_j ≤ qPos_i when <paramref name="causal"/>), 0 elsewhere,
    /// [B, H, Tq, Tk] in the accumulation dtype. With <see cref="LinearAttentionOptions.Normalize"/> the weights of the
    /// forms are κ_ij / (Σ_j κ_ij + ε) (<see cref="NormaliseKernel"/>); o = W·V equals every form's output.
    /// With a per-token gate g [B, Tg, H] (causal only) the decay factor is e^{Σ_{kPos_j &lt; r ≤ qPos_i} g_r}, the positions
    /// indexing the gate's token axis (0 ≤ pos &lt; Tg).
    /// </summary>
    public static Tensor Kernel(Tensor q, Tensor k, Tensor qPos, Tensor kPos, LinearAttentionOptions? options = null, Tensor? logDecay = null,
        bool causal = true)
    {
        options ??= LinearAttentionOptions.Default;
        Guard.Rank(q, 4, nameof(q), "B, Tq, H, D");
        Guard.Rank(k, 4, nameof(k), "B, Tk, H, D");
        bool gated = IsTokenGate(logDecay);
        if (gated) ValidateKernelGate(logDecay!, q, qPos, kPos, causal);
        using var scope = NewDisposeScope();
        var acc = AccumulationDtype(q.dtype);
        var qf = MapHeads(q, acc, options.FeatureMap, options.Scale);                  // φ(scale·q) [B, H, Tq, F]
        var kf = MapHeads(k, acc, options.FeatureMap, 1.0);                            // φ(k)       [B, H, Tk, F]
        var kernel = qf.matmul(kf.transpose(-2, -1));                                  // φq_i·φk_j
        var gap = (qPos.unsqueeze(1) - kPos.unsqueeze(0)).to(acc);                     // i − j [Tq, Tk]
        if (gated)
        {
            var seg = LinearAttentionGatedForms.SegmentSums(TokenLogDecay(logDecay!, acc));   // Σ_{j<r≤i} g_r [B, H, Tg, Tg], −∞ for j > i
            kernel = kernel * seg.index_select(-2, qPos.to(ScalarType.Int64)).index_select(-1, kPos.to(ScalarType.Int64)).exp();
        }
        else if (HeadLogDecay(logDecay, acc) is { } ld) kernel = kernel * (ld * gap).exp(); // · λ^{i−j}
        if (causal) kernel = kernel.masked_fill(gap < 0, 0.0);                         // hidden: j > i
        return kernel.MoveToOuterDisposeScope();
    }

    /// <summary>W_ij = κ_ij / (Σ_j κ_ij + ε) when <paramref name="options"/> normalise; κ itself otherwise.</summary>
    public static Tensor NormaliseKernel(Tensor kernel, LinearAttentionOptions? options = null)
    {
        options ??= LinearAttentionOptions.Default;
        return options.Normalize ? kernel / (kernel.sum(-1, keepdim: true) + options.Eps) : kernel;
    }

    /// <summary>Tokens per segment of the chunked form (rounded down to whole chunks, at least one chunk).</summary>
    public const int ChunkedSegmentTokens = 2048;

    /// <summary>The dtype states and sums are kept in: float64 for float64 inputs, float32 otherwise (half types accumulate in float32).</summary>
    public static ScalarType AccumulationDtype(ScalarType inputDtype) =>
        inputDtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

    /// <summary>Bytes of the recurrent state for these sizes (see <see cref="LinearState.BytesFor"/>).</summary>
    public static long StateBytes(long batch, long heads, long keyDim, long valueDim, LinearAttentionOptions? options = null,
        ScalarType inputDtype = ScalarType.Float32)
    {
        options ??= LinearAttentionOptions.Default;
        return LinearState.BytesFor(batch, heads, options.FeatureMap.OutputDim(keyDim), valueDim, options.Normalize, inputDtype);
    }

    /// <summary>φ(scale·x) for x [B, T, H, D] → [B, H, T, F] in <paramref name="acc"/>.</summary>
    internal static Tensor MapHeads(Tensor x, ScalarType acc, IFeatureMap map, double scale)
    {
        var xa = x.to(acc).permute(0, 2, 1, 3).contiguous();                           // heads first while x is narrow (D ≪ F),
        if (scale != 1.0) xa = xa * scale;                                              // so φ comes out contiguous; q ← scale·q
        return map.Apply(xa);                                                           // φ acts on the last dim only
    }

    /// <summary>log λ [H] → clamped to ≥ −10⁴, in <paramref name="acc"/>, shaped [1, H, 1, 1]; null stays null.</summary>
    internal static Tensor? HeadLogDecay(Tensor? logDecay, ScalarType acc) =>
        logDecay?.to(acc).clamp_min(LinearAttentionForms.LogDecayFloor).view(1, -1, 1, 1);

    /// <summary>True when <paramref name="logDecay"/> is a per-token gate [B, T, H] rather than one log-decay per head [H].</summary>
    internal static bool IsTokenGate(Tensor? logDecay) => logDecay is { Dimensions: 3 };

    /// <summary>g [B, T, H] → clamped to ≥ −10⁴ (−∞ included: e^{−10⁴} is 0 already), in <paramref name="acc"/>, head-major [B, H, T].</summary>
    internal static Tensor TokenLogDecay(Tensor gate, ScalarType acc) =>
        gate.to(acc).clamp_min(LinearAttentionForms.LogDecayFloor).permute(0, 2, 1);

    static void ValidateCausal(Tensor q, Tensor k, Tensor v, Tensor? logDecay, LinearState? h0, LinearAttentionOptions options)
    {
        ValidateQkv(q, k, v, causal: true);
        long f = FeatureDim(options.FeatureMap, q);
        ValidateDecay(logDecay, q);
        if (h0 is not null) ValidateState(h0, nameof(h0), q.shape[0], q.shape[2], f, v.shape[3], options.Normalize, q);
    }

    internal static void ValidateQkv(Tensor q, Tensor k, Tensor v, bool causal)
    {
        Guard.Qkv(q, k, v);
        bool kOk = k.shape[0] == q.shape[0] && k.shape[2] == q.shape[2] && k.shape[3] == q.shape[3] && (!causal || k.shape[1] == q.shape[1]);
        if (!kOk)
            throw new ArgumentException(
                $"k {Guard.ShapeText(k)} must match q {Guard.ShapeText(q)} in batch, heads, head dim{(causal ? " and length (causal)" : "")}.", nameof(k));
        if (v.shape[0] != k.shape[0] || v.shape[1] != k.shape[1] || v.shape[2] != k.shape[2])
            throw new ArgumentException($"v {Guard.ShapeText(v)} must match k {Guard.ShapeText(k)} in batch, length and heads.", nameof(v));
        if (q.shape[1] == 0 || k.shape[1] == 0)
            throw new ArgumentException($"q and k need at least one token (q {Guard.ShapeText(q)}, k {Guard.ShapeText(k)}).", nameof(q));
    }

    internal static long FeatureDim(IFeatureMap map, Tensor q)
    {
        ArgumentNullException.ThrowIfNull(map);
        try { return map.OutputDim(q.shape[^1]); }
        catch (ArgumentException e)
        {
            throw new ArgumentException(
                $"q head dim {q.shape[^1]} (q {Guard.ShapeText(q)}) does not fit the feature map {map.Name}: {e.Message}", nameof(q), e);
        }
    }

    /// <summary>A per-head log-decay [H] (<see cref="ValidateLogDecay"/>) or a per-token gate [B, T, H] matching q's batch, length and heads.</summary>
    internal static void ValidateDecay(Tensor? logDecay, Tensor q)
    {
        if (logDecay is null) return;
        if (logDecay.Dimensions == 1) { ValidateLogDecay(logDecay, q); return; }
        if (logDecay.Dimensions != 3)
            throw new ArgumentException(
                $"logDecay must be [H] (one log-decay per head) or [B, T, H] (a per-token gate), got {Guard.ShapeText(logDecay)}.", nameof(logDecay));
        long[] expected = { q.shape[0], q.shape[1], q.shape[2] };
        if (!logDecay.shape.SequenceEqual(expected))
            throw new ArgumentException(
                $"logDecay as a per-token gate must be [B, T, H] = [{string.Join(", ", expected)}] (q is {Guard.ShapeText(q)}), " +
                $"got {Guard.ShapeText(logDecay)}.",
                nameof(logDecay));
        CheckGateValues(logDecay, q, nameof(logDecay));
    }

    /// <summary>Floating, on q's device, ≤ 0 and not NaN (the values are read where <see cref="Guard.ShouldReadValues"/> allows).</summary>
    internal static void CheckGateValues(Tensor gate, Tensor q, string name)
    {
        Guard.FloatingPoint(gate, name);
        Guard.SameDevice(q, nameof(q), gate, name);
        if (!Guard.ShouldReadValues(gate)) return;
        using var scope = NewDisposeScope();
        if ((gate.isnan() | gate.gt(0)).any().item<bool>())
            throw new ArgumentException($"{name} must be ≤ 0 (λ_t = exp(g_t) ≤ 1) and not NaN.", name);
    }

    static void ValidateKernelGate(Tensor gate, Tensor q, Tensor qPos, Tensor kPos, bool causal)
    {
        if (!causal) throw new ArgumentException("a per-token gate [B, T, H] decays causally: pass causal = true.", "logDecay");
        if (gate.shape[0] != q.shape[0] || gate.shape[2] != q.shape[2])
            throw new ArgumentException(
                $"logDecay as a per-token gate must be [B, Tg, H] with q's B and H (q is {Guard.ShapeText(q)}), got {Guard.ShapeText(gate)}.",
                "logDecay");
        CheckGateValues(gate, q, "logDecay");
        if (!Guard.ShouldReadValues(qPos) || !Guard.ShouldReadValues(kPos)) return;
        using var scope = NewDisposeScope();
        long Read(Tensor x) => x.to(ScalarType.Int64).item<long>();
        long lo = Math.Min(Read(qPos.min()), Read(kPos.min())), hi = Math.Max(Read(qPos.max()), Read(kPos.max()));
        if (lo < 0 || hi >= gate.shape[1])
            throw new ArgumentException($"positions [{lo}, {hi}] must index the gate's {gate.shape[1]} tokens.", "logDecay");
    }

    internal static void ValidateLogDecay(Tensor? logDecay, Tensor q)
    {
        if (logDecay is null) return;
        Guard.Rank(logDecay, 1, nameof(logDecay), "H");
        Guard.Dim(logDecay, 0, q.shape[2], nameof(logDecay), "length (one log-decay per head)");
        Guard.FloatingPoint(logDecay, nameof(logDecay));
        Guard.SameDevice(q, nameof(q), logDecay, nameof(logDecay));
        if (!Guard.ShouldReadValues(logDecay)) return;
        using var scope = NewDisposeScope();
        if ((logDecay.isnan() | logDecay.gt(0)).any().item<bool>())
            throw new ArgumentException("logDecay must be ≤ 0 (λ = exp(log λ) ≤ 1) and not NaN.", nameof(logDecay));
    }

    internal static void ValidateState(LinearState state, string name, long batch, long heads, long featureDim, long valueDim, bool normalize, Tensor q)
    {
        if (state.S.IsInvalid) throw new ArgumentException($"{name}.S is a disposed tensor.", name);
        long[] expected = { batch, heads, featureDim, valueDim };
        if (!state.S.shape.SequenceEqual(expected))
            throw new ArgumentException(
                $"{name}.S must be [B, H, F, Dv] = [{string.Join(", ", expected)}] (F from the feature map), got {Guard.ShapeText(state.S)}.", name);
        if (!state.S.is_floating_point()) throw new ArgumentException($"{name}.S must be floating-point, got {state.S.dtype}.", name);
        if (state.S.device.ToString() != q.device.ToString()) throw new ArgumentException($"{name} is on {state.S.device} but q is on {q.device}.", name);
        if (normalize && state.Z is null) throw new ArgumentException($"{name} has no z but the attention is normalised.", name);
        if (!normalize && state.Z is not null) throw new ArgumentException($"{name} carries z but the attention is not normalised.", name);
        if (state.Z is not null && state.Z.IsInvalid) throw new ArgumentException($"{name}.Z is a disposed tensor.", name);
    }
}
