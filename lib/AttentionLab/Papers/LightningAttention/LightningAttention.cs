using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LightningAttention;

/// <summary>
/// Lightning Attention-2 (Qin et al., ICML 2024): causal linear attention with a fixed per-head decay, computed in tiles —
/// a masked quadratic product inside each block (left product), a carried d×d state between blocks (right product) —
/// so no sequence-wide cumulative sum is ever formed. Layout [B, T, H, D] like the shared engine.
/// </summary>
/// <remarks>
/// Output (no softmax, no normaliser, no 1/√d):  o_t = Σ_{s≤t} λ^{t−s} (q_t·k_s) v_s,   λ_h = e^{−a_h} = e^{log λ_h}.
/// Recurrence: S_t = λ S_{t−1} + k_tᵀ v_t,  o_t = q_t S_t.
/// Tiled (block size B, block i covers positions iB … iB + B − 1, j the position inside the block), as the Triton
/// kernel <c>lightning_attn2.py</c> writes it:
///   O_intra = [(Q_i K_iᵀ) ⊙ D] V_i,          D_{jl} = λ^{j−l} (j ≥ l), 0 otherwise      (left product)
///   O_inter = diag(λ^{j}) · Q_i · KV_(i),      KV_(i) = Σ_{s&lt;iB} λ^{iB−s} k_sᵀ v_s      (right product)
///   KV_(i+1) = λ^{B} · KV_(i) + (diag(λ^{B−j}) K_i)ᵀ V_i
/// check: λ^{j} · λ^{iB−s} = λ^{t−s} for t = iB + j. The kernel's KV_(i) is the state decayed to the block's first
/// position, one factor λ more than the engine's state after the previous token (Algorithm 1 of the paper writes
/// Λ = diag(λ, …, λ^B) and λ^B Λ^{−1} instead — the same numbers with both offsets shifted by one).
/// <see cref="Tiled"/> is that loop; <see cref="Forward"/> is the shared engine's chunked form (all intra blocks in one
/// batched matmul, Algorithm 1's offsets); <see cref="LightningNaive.Attention"/> is the masked quadratic reference
/// (<c>lightning_attn/ops/torch/linear_attention.py</c>); <see cref="Recurrent"/> the token loop; <see cref="Cumsum"/> the
/// slow form the paper argues against (every prefix state materialised by a cumulative sum). All five return the
/// same output and the same final state hT = S_{T−1} (the engine's convention, so it continues any of them).
/// </remarks>
public static class LightningAttention
{
    /// <summary>The Triton kernel's block size.</summary>
    public const int DefaultBlock = 64;

    /// <summary>
    /// The fast form: the shared engine's chunked linear attention (<see cref="LinearAttention.Chunked"/>) with the
    /// identity feature map, no normaliser and scale 1 — a thin wrapper.
    /// </summary>
    /// <param name="q">[B, T, H, D]</param>
    /// <param name="k">[B, T, H, D]</param>
    /// <param name="v">[B, T, H, Dv]</param>
    /// <param name="logDecay">log λ_h [H] (≤ 0; −a_h of <see cref="DecaySchedules"/>); null: no decay (plain causal linear attention).</param>
    /// <param name="block">block (chunk) length B &gt; 0; need not divide T.</param>
    /// <param name="h0">state before the first token S_{−1} [B, H, D, Dv]; null: zero.</param>
    public static LinearAttentionResult Forward(Tensor q, Tensor k, Tensor v, Tensor? logDecay = null, int block = DefaultBlock, LinearState? h0 = null)
    {
        CheckBlock(block);
        return LinearAttention.Chunked(q, k, v, logDecay, h0, new LinearAttentionOptions { ChunkSize = block });
    }

    /// <summary>The token loop S_t = λ S_{t−1} + k_tᵀ v_t, o_t = q_t S_t (the engine's recurrent form). Arguments as <see cref="Forward"/>.</summary>
    public static LinearAttentionResult Recurrent(Tensor q, Tensor k, Tensor v, Tensor? logDecay = null, LinearState? h0 = null) =>
        LinearAttention.Recurrent(q, k, v, logDecay, h0);

    /// <summary>
    /// Lightning Attention-2's forward loop as the kernel runs it: per block the intra (masked left product) and inter (state
    /// right product) parts and the state update with λ^B, λ^{j}, λ^{B−j}. The kernel pads T to a multiple of the block
    /// with zeros (zero keys and values add nothing to the state, padded outputs are dropped); here the last block is
    /// simply shorter (its mask and λ^{j} cut to its length), which gives the same numbers without copying q, k, v.
    /// Differentiable (autograd through the loop); without autograd each block is written once into the output.
    /// Arguments as <see cref="Forward"/>.
    /// </summary>
    public static LinearAttentionResult Tiled(Tensor q, Tensor k, Tensor v, Tensor? logDecay = null, int block = DefaultBlock, LinearState? h0 = null)
    {
        Validate(q, k, v, logDecay, h0);
        CheckBlock(block);
        using var scope = NewDisposeScope();
        var acc = LinearAttention.AccumulationDtype(q.dtype);
        long b = q.shape[0], t = q.shape[1], h = q.shape[2], d = q.shape[3], dv = v.shape[3];
        long blocks = (t + block - 1) / block;
        var (qh, kh, vh) = (Heads(q, acc), Heads(k, acc), Heads(v, acc));               // [B, H, T, ·] views
        var ld = LinearAttention.HeadLogDecay(logDecay, acc);                                     // log λ [1, H, 1, 1] or null
        var f = BlockFactors(ld, block, acc, q.device);
        var kv = h0 is null ? torch.zeros(new[] { b, h, d, dv }, dtype: acc, device: q.device)
            : Decay(h0.S.to(acc), ld, 1);                                                         // KV_(0) = λ·S_{−1}
        bool track = LinearAttentionForms.Tracks(q, k, v, logDecay, h0?.S);
        var output = track ? null : torch.empty(new[] { b, t, h, dv }, dtype: q.dtype, device: q.device);   // written once per block
        var outputs = new Tensor[track ? blocks : 0];
        Tensor? hT = null;
        for (long i = 0; i < blocks; i++)
        {
            long start = i * block, len = Math.Min(block, t - start);                             // the last block may be shorter
            var (qi, ki, vi) = (qh.narrow(2, start, len), kh.narrow(2, start, len), vh.narrow(2, start, len));
            var diag = len == block ? f.Diag : f.Diag.narrow(-2, 0, len).narrow(-1, 0, len);
            var qDecay = len == block ? f.QDecay : f.QDecay.narrow(-2, 0, len);
            var intra = qi.matmul(ki.transpose(-2, -1)).mul_(diag).matmul(vi);                   // [(Q_i K_iᵀ) ⊙ D] V_i
            var inter = qi.matmul(kv).mul_(qDecay);                                               // diag(λ^j) Q_i KV_(i)
            if (track) outputs[i] = intra + inter;
            else output!.narrow(1, start, len).permute(0, 2, 1, 3).copy_(intra.add_(inter));
            if (i < blocks - 1)
                kv = f.BlockDecay * kv + (ki * f.KDecay).transpose(-2, -1).matmul(vi);           // KV_(i+1) = λ^B KV_(i) + (λ^{B−j} K_i)ᵀ V_i
            else
            {
                var w = ld is null ? null : (torch.arange(len - 1, -1, -1, dtype: acc, device: q.device).unsqueeze(-1) * ld).exp(); // λ^{r−1−j}
                // S_{T−1} = λ^{r−1} KV_(i) + Σ_j λ^{r−1−j} k_jᵀ v_j   (r = len, the real tokens of the last block)
                hT = Decay(kv, ld, len - 1) + (w is null ? ki : ki * w).transpose(-2, -1).matmul(vi);
            }
        }
        output ??= torch.cat(outputs, 2).permute(0, 2, 1, 3).to(q.dtype).contiguous();          // [B, T, H, Dv]
        return new LinearAttentionResult(output, new LinearState(hT!.contiguous())).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The cumsum form the paper argues against: causal linear attention through the prefix states
    /// P_t = Σ_{s≤t} λ^{t−s} k_sᵀ v_s of <b>every</b> position, materialised as one [B, H, T, D, Dv] tensor by a cumulative sum
    /// of the outer products k_sᵀ v_s, then o_t = q_t P_t. Cost and memory O(T·D·Dv) per head — T full d×d states, which is
    /// what makes it slow (memory traffic) where the tiled form keeps one state. Arguments as <see cref="Forward"/>.
    /// </summary>
    /// <remarks>
    /// Without decay: P = cumsum_t(k_tᵀ v_t) (one cumulative sum over the whole sequence). With decay the sum is rescaled,
    /// P_t = λ^{t−s₀} · [λ P_{s₀−1} + Σ_{s₀≤s≤t} λ^{−(s−s₀)} k_sᵀ v_s], in segments starting at s₀ short enough that
    /// λ^{−(s−s₀)} stays inside the float range (a·length ≤ <see cref="CumsumDecayRange"/>; one segment when a = 0), each
    /// segment carrying the previous one's last prefix state. h0 = P_{−1}; hT = P_{T−1}.
    /// </remarks>
    public static LinearAttentionResult Cumsum(Tensor q, Tensor k, Tensor v, Tensor? logDecay = null, LinearState? h0 = null)
    {
        Validate(q, k, v, logDecay, h0);
        using var scope = NewDisposeScope();
        var acc = LinearAttention.AccumulationDtype(q.dtype);
        long t = q.shape[1];
        var (qh, kh, vh) = (Heads(q, acc), Heads(k, acc), Heads(v, acc));                 // [B, H, T, ·]
        var ld = LinearAttention.HeadLogDecay(logDecay, acc)?.unsqueeze(-1);                        // log λ [1, H, 1, 1, 1] or null
        var outer = kh.unsqueeze(-1) * vh.unsqueeze(-2);                                            // k_sᵀ v_s  [B, H, T, D, Dv]
        long segment = CumsumSegment(logDecay, t, acc);
        var prev = h0?.S.to(acc);                                                                   // P_{s₀−1}
        var outputs = new List<Tensor>();
        for (long s0 = 0; s0 < t; s0 += segment)
        {
            long len = Math.Min(segment, t - s0);
            var x = outer.narrow(2, s0, len);
            Tensor p;
            if (ld is null) p = prev is null ? x.cumsum(2) : x.cumsum(2) + prev.unsqueeze(2);       // P_t = P_{s₀−1} + Σ k_sᵀ v_s
            else
            {
                var j = torch.arange(len, dtype: acc, device: q.device).view(1, 1, len, 1, 1);      // s − s₀
                var c = (x * (-j * ld).exp()).cumsum(2);                                            // Σ λ^{−(s−s₀)} k_sᵀ v_s
                if (prev is not null) c = c + (ld.squeeze(2).exp() * prev).unsqueeze(2);           // + λ P_{s₀−1}
                p = c * (j * ld).exp();                                                             // P_t = λ^{t−s₀} C_t
            }
            outputs.Add(qh.narrow(2, s0, len).unsqueeze(-2).matmul(p).squeeze(-2));                 // o_t = q_t P_t
            prev = p.select(2, len - 1);
        }
        var o = torch.cat(outputs, 2).permute(0, 2, 1, 3).to(q.dtype).contiguous();
        return new LinearAttentionResult(o, new LinearState(prev!.contiguous())).MoveToOuterDisposeScope();
    }

    /// <summary>The largest a·(segment length) of <see cref="Cumsum"/>'s rescaled sums: e^{40} in float32, e^{300} in float64.</summary>
    public static double CumsumDecayRange(ScalarType accumulation) => accumulation == ScalarType.Float64 ? 300 : 40;

    /// <summary>Segment length of <see cref="Cumsum"/>: T without decay, else ⌊range / max_h a_h⌋ (at least 1).</summary>
    static long CumsumSegment(Tensor? logDecay, long t, ScalarType acc)
    {
        if (logDecay is null) return Math.Max(1, t);
        using var scope = NewDisposeScope();
        double aMax = -logDecay.to(ScalarType.Float64).clamp_min(LogDecayFloor).min().item<double>();  // max_h a_h
        return aMax <= 0 ? Math.Max(1, t) : Math.Clamp((long)Math.Floor(CumsumDecayRange(acc) / aMax), 1, Math.Max(1, t));
    }

    /// <summary>As the engine: e^{−10⁴} is already 0, so −∞ is read as −10⁴.</summary>
    const double LogDecayFloor = -1e4;

    /// <summary>
    /// The decay mask D [H, L, L] of every head: D_ts = λ_h^{t−s} for t ≥ s, 0 above the diagonal (tril → exp → tril,
    /// so strong decay underflows to 0 and never overflows). For heatmaps and tests.
    /// </summary>
    /// <param name="logDecay">log λ [H] (≤ 0).</param>
    /// <param name="length">L &gt; 0.</param>
    public static Tensor DecayMask(Tensor logDecay, long length)
    {
        Guard.Rank(logDecay, 1, nameof(logDecay), "H");
        Guard.FloatingPoint(logDecay, nameof(logDecay));
        Guard.Positive(length, nameof(length));
        using var scope = NewDisposeScope();
        var acc = LinearAttention.AccumulationDtype(logDecay.dtype);
        return Mask(length, LinearAttention.HeadLogDecay(logDecay, acc)!).squeeze(0).MoveToOuterDisposeScope();
    }

    /// <summary>The block-level decay factors of <see cref="Tiled"/> for a block of B tokens (see <see cref="LightningBlockFactors"/>).</summary>
    /// <param name="logDecay">log λ [H] (≤ 0).</param>
    /// <param name="block">B &gt; 0.</param>
    public static LightningBlockFactors BlockFactors(Tensor logDecay, int block)
    {
        Guard.Rank(logDecay, 1, nameof(logDecay), "H");
        Guard.FloatingPoint(logDecay, nameof(logDecay));
        CheckBlock(block);
        using var scope = NewDisposeScope();
        var acc = LinearAttention.AccumulationDtype(logDecay.dtype);
        var f = BlockFactors(LinearAttention.HeadLogDecay(logDecay, acc), block, acc, logDecay.device);
        return new LightningBlockFactors(f.BlockDecay.reshape(-1), f.QDecay.squeeze(-1).squeeze(0), f.KDecay.squeeze(-1).squeeze(0), f.Diag.squeeze(0))
            .MoveToOuterDisposeScope();
    }

    /// <summary>λ^B [1, H, 1, 1], λ^{j} and λ^{B−j} [1, H, B, 1], D [1, H, B, B] (all ones / tril ones without decay).</summary>
    static (Tensor BlockDecay, Tensor QDecay, Tensor KDecay, Tensor Diag) BlockFactors(Tensor? ld, int block, ScalarType acc, Device device)
    {
        var heads = ld?.shape[1] ?? 1;
        var l = ld ?? torch.zeros(1, heads, 1, 1, dtype: acc, device: device);
        var j = torch.arange(block, dtype: acc, device: device).unsqueeze(-1);                     // j = 0 … B−1 as a column
        return ((l * block).exp(),                                                                  // λ^B
                (j * l).exp(),                                                                      // λ^{j}
                ((block - j) * l).exp(),                                                            // λ^{B−j}
                Mask(block, l));                                                                    // D_{jl} = λ^{j−l}, j ≥ l
    }

    /// <summary>D [1, H, L, L] from log λ [1, H, 1, 1]: (t−s)·log λ, −∞ above the diagonal, then exp.</summary>
    internal static Tensor Mask(long length, Tensor ld)
    {
        var pos = torch.arange(length, dtype: ld.dtype, device: ld.device);
        var rel = pos.unsqueeze(1) - pos.unsqueeze(0);                                              // t − s
        return (rel * ld).masked_fill(rel.lt(0), double.NegativeInfinity).exp();                    // tril → exp → tril
    }

    /// <summary>λ^{n} · x for a state x [B, H, ·, ·] (x itself without decay).</summary>
    static Tensor Decay(Tensor x, Tensor? ld, long n) => ld is null || n == 0 ? x : (ld * n).exp() * x;

    /// <summary>x [B, T, H, ·] → a [B, H, T, ·] view in <paramref name="acc"/> (a copy only when the dtype changes).</summary>
    internal static Tensor Heads(Tensor x, ScalarType acc) => x.to(acc).permute(0, 2, 1, 3);

    internal static void Validate(Tensor q, Tensor k, Tensor v, Tensor? logDecay, LinearState? h0)
    {
        LinearAttention.ValidateQkv(q, k, v, causal: true);
        LinearAttention.ValidateLogDecay(logDecay, q);
        if (h0 is not null) LinearAttention.ValidateState(h0, nameof(h0), q.shape[0], q.shape[2], q.shape[3], v.shape[3], false, q);
    }

    static void CheckBlock(int block)
    {
        if (block <= 0) throw new ArgumentOutOfRangeException(nameof(block), block, "block must be positive.");
    }
}

/// <summary>
/// The block-level decay factors of Lightning Attention-2's tiled loop for a block of B tokens, per head:
/// λ^B (<see cref="BlockDecay"/>, [H]) decays the carried state across a whole block; λ^{j} (<see cref="QDecay"/>, [H, B])
/// scales the inter-block output of the query at offset j; λ^{B−j} (<see cref="KDecay"/>, [H, B]) weights key j's
/// contribution to the next state; D (<see cref="Diag"/>, [H, B, B]) is the intra-block mask λ^{j−l}.
/// </summary>
public sealed record LightningBlockFactors(Tensor BlockDecay, Tensor QDecay, Tensor KDecay, Tensor Diag) : IDisposable
{
    /// <summary>Moves every tensor out of the current dispose scope.</summary>
    public LightningBlockFactors MoveToOuterDisposeScope()
    {
        BlockDecay.MoveToOuterDisposeScope(); QDecay.MoveToOuterDisposeScope(); KDecay.MoveToOuterDisposeScope(); Diag.MoveToOuterDisposeScope();
        return this;
    }

    public void Dispose()
    {
        BlockDecay.Dispose(); QDecay.Dispose(); KDecay.Dispose(); Diag.Dispose();
    }
}
