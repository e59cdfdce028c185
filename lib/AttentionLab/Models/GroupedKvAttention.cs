using AttentionLab.Attention;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// Causal softmax attention with H query heads and grouped (fused) key/value heads, on the <see cref="AttentionMixer"/>
/// base: the base projects H heads of q, k and v; a <see cref="KvHeadMap"/> per K and per V fuses them into S_K and S_V
/// cached heads (F ⊙ support, trainable for DHA, fixed for GQA), and query head h reads cached heads slot_K(h), slot_V(h)
/// through a gather (non-contiguous groups allowed). The decode state caches only the S_K + S_V fused heads, so
/// <see cref="KvBytesPerToken"/> is GQA's/DHA's saving. Converted from a trained MHA by <see cref="FromMha"/> / <see cref="Convert"/>.
/// </summary>
/// <remarks>
/// q, k, v = split_h(x W_QKV)                               [B, T, H, D]
/// k̃_s = Σ_h F_K[s, h] k_h,  ṽ_s = Σ_h F_V[s, h] v_h        hook_k / hook_v see k̃ [B, T, S_K, D], ṽ [B, T, S_V, Dv] (what is cached)
/// s_ij^h = (R_i q_i^h)·(R_j k̃_j^{slot_K(h)}) / √D, −∞ where j &gt; i;  A = softmax_j;  z_i^h = Σ_j A_ij^h ṽ_j^{slot_V(h)}
/// y = concat_h(z^h) W_O.   F = I at S = H is MHA exactly (a product with 1 and sums with 0).
/// KV bytes per token = (S_K · D + S_V · Dv) · bytes per element (per sequence).
/// This form keeps W_QKV's H key/value heads and fuses their outputs (the base fixes W_QKV at H heads of each); a true
/// GQA layer would hold S_K and S_V heads of weights — the same function (<see cref="FusedKeyWeights"/>) and cache.
/// </remarks>
public sealed class GroupedKvAttention : AttentionMixer
{
    readonly Parameter fusion_k, fusion_v;             // F_K [S_K, H], F_V [S_V, H]
    readonly double[] support_k, support_v;            // 0/1 where F may be non-zero, row-major [S, H] (plain numbers: no buffer to() would cast)
    readonly long[] slot_k, slot_v;                    // per query head, its cached key / value head
    readonly PositionKind positions;
    readonly double ropeBase, ropeScale;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H query heads (and projected K/V heads).</param>
    /// <param name="keys">The key map (H heads → S_K cached heads).</param>
    /// <param name="values">The value map (H heads → S_V cached heads).</param>
    /// <param name="positions">RoPE acts here; None, Sinusoidal and Learned live in the embeddings. ALiBi is not supported.</param>
    /// <param name="ropeBase">RoPE's base.</param>
    /// <param name="trainableFusion">F_K and F_V train (DHA's ω) or stay fixed (GQA).</param>
    /// <param name="ropeScale">RoPE position interpolation factor (1 = plain RoPE).</param>
    public GroupedKvAttention(int dModel, int heads, KvHeadMap keys, KvHeadMap values, PositionKind positions = PositionKind.None,
        double ropeBase = 10000, bool trainableFusion = false, double ropeScale = 1) : base(nameof(GroupedKvAttention), dModel, heads)
    {
        if (!(ropeScale > 0) || double.IsInfinity(ropeScale))
            throw new ArgumentException($"ropeScale must be positive and finite, got {ropeScale}.", nameof(ropeScale));
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(values);
        if (keys.Heads != heads) throw new ArgumentException($"the key map covers {keys.Heads} heads, the layer has {heads}.", nameof(keys));
        if (values.Heads != heads) throw new ArgumentException($"the value map covers {values.Heads} heads, the layer has {heads}.", nameof(values));
        if (!Enum.IsDefined(positions) || positions == PositionKind.Alibi)
            throw new ArgumentException($"positions {positions} is not supported here (RoPE, None, Sinusoidal or Learned).", nameof(positions));
        if (positions == PositionKind.Rope && KeyDim % 2 != 0)
            throw new ArgumentException($"RoPE needs an even head dim, got {dModel}/{heads}.", nameof(positions));
        (this.positions, this.ropeBase, this.ropeScale, KeyMap, ValueMap) = (positions, ropeBase, ropeScale, keys, values);
        fusion_k = nn.Parameter(Matrix(keys.Fusion), requires_grad: trainableFusion);
        fusion_v = nn.Parameter(Matrix(values.Fusion), requires_grad: trainableFusion);
        support_k = Flat(keys.Support);
        support_v = Flat(values.Support);
        slot_k = keys.SlotOfHead.Select(x => (long)x).ToArray();
        slot_v = values.SlotOfHead.Select(x => (long)x).ToArray();
        RegisterComponents();
    }

    /// <summary>The key map the layer was built with (its initial F_K).</summary>
    public KvHeadMap KeyMap { get; }
    /// <summary>The value map the layer was built with (its initial F_V).</summary>
    public KvHeadMap ValueMap { get; }
    /// <summary>S_K cached key heads.</summary>
    public int KeySlots => KeyMap.Slots;
    /// <summary>S_V cached value heads.</summary>
    public int ValueSlots => ValueMap.Slots;
    /// <summary>F_K [S_K, H] (trainable for DHA; multiplied by its support at use).</summary>
    public Parameter KeyFusion => fusion_k;
    /// <summary>F_V [S_V, H].</summary>
    public Parameter ValueFusion => fusion_v;
    public PositionKind PositionKind => positions;

    /// <summary>KV-cache bytes per token per sequence: (S_K · D + S_V · Dv) · bytes per element of <paramref name="dtype"/>.</summary>
    public long KvBytesPerToken(ScalarType dtype = ScalarType.Float32)
    {
        using var scope = NewDisposeScope();
        return ((long)KeySlots * KeyDim + (long)ValueSlots * ValueDim) * torch.empty(0, dtype: dtype).ElementSize;
    }

    /// <summary>The effective fused key weights W̃_K [S_K, d, D] = Σ_h F_K[s, h] W_K^h (DHA's fusion loss reads them; differentiable in F).</summary>
    public Tensor FusedKeyWeights()
    {
        using var scope = NewDisposeScope();
        return torch.einsum("sh,hdk->sdk", EffectiveFusion(fusion_k, support_k), W_K).MoveToOuterDisposeScope();
    }

    /// <summary>W̃_V [S_V, d, Dv] = Σ_h F_V[s, h] W_V^h.</summary>
    public Tensor FusedValueWeights()
    {
        using var scope = NewDisposeScope();
        return torch.einsum("sh,hdk->sdk", EffectiveFusion(fusion_v, support_v), W_V).MoveToOuterDisposeScope();
    }

    /// <summary>The current F_K ⊙ support as numbers [S_K, H] (e.g. to collapse DHA's trained ω).</summary>
    public double[,] KeyFusionValues() => Values(fusion_k, support_k);
    /// <summary>The current F_V ⊙ support as numbers [S_V, H].</summary>
    public double[,] ValueFusionValues() => Values(fusion_v, support_v);

    /// <summary>
    /// A grouped layer holding a copy of <paramref name="mha"/>'s W_QKV and W_O (softmax attention with RoPE or no positions
    /// in the scores): with identity maps it equals <paramref name="mha"/>; with mean-pool maps it is GQA's conversion.
    /// </summary>
    public static GroupedKvAttention FromMha(CausalSelfAttention mha, KvHeadMap keys, KvHeadMap values, bool trainableFusion = false)
    {
        ArgumentNullException.ThrowIfNull(mha);
        if (mha.Kind != AttentionKind.Softmax || mha.Normaliser is not SoftmaxNormaliser)
            throw new ArgumentException($"only plain softmax attention converts; the layer is {mha.Kind}.", nameof(mha));
        var w = mha.Qkv.weight!;
        var layer = new GroupedKvAttention(mha.DModel, mha.Heads, keys, values, mha.PositionKind, mha.RopeBase, trainableFusion, mha.RopeScale);
        layer.to(w.device).to(w.dtype);
        using (torch.no_grad())
        {
            layer.Qkv.weight!.copy_(w);
            layer.Proj.weight!.copy_(mha.Proj.weight!);
            if (mha.Qkv.bias is { } bq) layer.Qkv.bias!.copy_(bq);
            if (mha.Proj.bias is { } bo) layer.Proj.bias!.copy_(bo);
        }
        return layer;
    }

    /// <summary>
    /// A copy of the MHA <paramref name="model"/> whose layer ℓ is a <see cref="GroupedKvAttention"/> with the maps
    /// <paramref name="maps"/>(ℓ) (every other parameter copied by name).
    /// </summary>
    public static TinyGpt Convert(TinyGpt model, Func<int, (KvHeadMap Keys, KvHeadMap Values)> maps, bool trainableFusion = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(maps);
        var config = model.Config;
        var mixers = model.Blocks.Select((b, l) => b.Mixer is CausalSelfAttention a ? a
            : throw new ArgumentException($"block {l} has a {b.Mixer.GetType().Name}, not CausalSelfAttention.", nameof(model))).ToList();
        var w = model.FinalNorm.Weight;
        var converted = new TinyGpt(config, l =>
        {
            var (k, v) = maps(l);
            return FromMha(mixers[l], k, v, trainableFusion);
        });
        converted.to(w.device).to(w.dtype);
        var source = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (torch.no_grad())
            foreach (var (name, p) in converted.named_parameters())
                if (source.TryGetValue(name, out var from)) p.copy_(from);
                else if (!name.Contains("fusion_", StringComparison.Ordinal))
                    throw new InvalidOperationException($"parameter {name} has no counterpart in the MHA model.");
        return converted;
    }

    /// <summary>k̃ = F_K · k, ṽ = F_V · v over the head axis (before hook_k / hook_v: the hooks see what the cache holds).</summary>
    protected override (Tensor Q, Tensor K, Tensor V) Activate(Tensor q, Tensor k, Tensor v) =>
        (q, torch.einsum("bthd,sh->btsd", k, EffectiveFusion(fusion_k, support_k).to(k.dtype)),
            torch.einsum("bthd,sh->btsd", v, EffectiveFusion(fusion_v, support_v).to(v.dtype)));

    /// <summary>Query head h scores against cached key head slot_K(h) (gathered to H heads), RoPE at use, causal by position.</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        k = k.index_select(2, torch.tensor(slot_k, device: k.device));                 // [B, Tk, H, D]: k̃^{slot_K(h)}
        if (positions == PositionKind.Rope)
        {
            q = Attention.Positions.Rope(q, qPos, ropeBase, ropeScale);                 // R_i q
            k = Attention.Positions.Rope(k, kPos, ropeBase, ropeScale);                 // R_j k̃ (cached un-rotated, rotated at use)
        }
        return base.Scores(q, k, qPos, kPos, cachedKeys);
    }

    /// <summary>z^h = A^h · ṽ^{slot_V(h)}.</summary>
    protected override Tensor Combine(Tensor pattern, Tensor v) => base.Combine(pattern, v.index_select(2, torch.tensor(slot_v, device: v.device)));

    /// <summary>A cache of S_K fused key heads and S_V fused value heads.</summary>
    protected override MixerState CreateState(long batch, ScalarType dtype, Device device) => new GroupedKvState(this);

    static Tensor EffectiveFusion(Tensor fusion, double[] support) =>
        fusion * torch.tensor(support, fusion.shape, dtype: fusion.dtype, device: fusion.device);     // F ⊙ support

    static double[,] Values(Tensor fusion, double[] support)
    {
        using var scope = NewDisposeScope();
        var f = EffectiveFusion(fusion, support).detach().to(ScalarType.Float64).cpu();
        var data = f.data<double>().ToArray();
        var result = new double[f.shape[0], f.shape[1]];
        for (int i = 0; i < f.shape[0]; i++) for (int j = 0; j < f.shape[1]; j++) result[i, j] = data[i * f.shape[1] + j];
        return result;
    }

    static Tensor Matrix(double[,] m)
    {
        var flat = new double[m.Length];
        for (int i = 0; i < m.GetLength(0); i++) for (int j = 0; j < m.GetLength(1); j++) flat[i * m.GetLength(1) + j] = m[i, j];
        return torch.tensor(flat, new long[] { m.GetLength(0), m.GetLength(1) }, dtype: ScalarType.Float32);
    }

    static double[] Flat(bool[,] m) => m.Cast<bool>().Select(b => b ? 1.0 : 0.0).ToArray();     // row-major

    /// <summary>The decode cache of a grouped layer: fused keys [B, t, S_K, D] and values [B, t, S_V, Dv], appended per step.</summary>
    public sealed class GroupedKvState(GroupedKvAttention layer) : AttentionState(layer)
    {
        Tensor? keys, values;

        /// <summary>Bytes held: t · (S_K · D + S_V · Dv) · element size · B.</summary>
        public override long Bytes => (keys is null ? 0 : keys.numel() * keys.ElementSize) + (values is null ? 0 : values.numel() * values.ElementSize);

        public override Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor x)
        {
            Tensor Grow(Tensor? old, Tensor add)
            {
                using var scope = NewDisposeScope();
                var grown = (old is null ? add.detach().clone() : torch.cat(new[] { old, add.detach() }, 1)).DetachFromDisposeScope();
                old?.Dispose();
                return grown;
            }
            keys = Grow(keys, k);
            values = Grow(values, v);
            long t = keys.shape[1];
            var pos = torch.arange(t, device: q.device);
            var z = Owner!.Attend(q, keys, values, pos.narrow(0, t - 1, 1), pos, cachedKeys: true).Z;
            Advance();
            return z;
        }

        public override void Dispose()
        {
            keys?.Dispose();
            values?.Dispose();
        }
    }
}
