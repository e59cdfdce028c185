using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.S2Attention;

/// <summary>
/// S2-Attention as a sequence mixer x [B, T, d] → [B, T, d]: projections around <see cref="BlockSparseAttention"/> with
/// the heterogeneous local + vertical-stride pattern of <see cref="S2Pattern.LocalStride"/> (one pattern per head). It
/// streams with a full KV cache: the heads' residues together cover every distant block, so no key can be dropped — S2
/// saves reads per token, not KV memory (the paper's KV-efficiency rule is about not storing blocks that *no* head reads).
/// </summary>
/// <remarks>
/// q, k, v = split(W_qkv x) [B, T, H, d/H];  y = W_O concat_h BlockSparse_h(q, k, v)  with head h reading key block j
/// from query block i iff j ≤ i ∧ (i − j &lt; ℓ ∨ j ≡ r_h mod s) (token-causal inside the diagonal block).
/// No positions here: TinyGpt's embeddings carry them.
/// </remarks>
public sealed class S2SelfAttention : nn.Module<Tensor, Tensor>, IStreamingMixer
{
    readonly Linear qkv, proj;
    readonly int?[] residues;
    BlockMask? pattern;                                                                      // built for the longest T seen

    /// <param name="dModel">d.</param>
    /// <param name="heads">H; must divide d. Heterogeneous residues cover every distant block when H ≥ s.</param>
    /// <param name="block">tokens per block b.</param>
    /// <param name="localBlocks">ℓ, the local window in blocks (diagonal included).</param>
    /// <param name="vertStride">s, the vertical stride in key blocks.</param>
    public S2SelfAttention(int dModel, int heads, int block = 4, int localBlocks = 2, int vertStride = 2) : base(nameof(S2SelfAttention))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        Guard.Positive(block, nameof(block));
        Guard.Positive(localBlocks, nameof(localBlocks));
        Guard.Positive(vertStride, nameof(vertStride));
        if (dModel % heads != 0) throw new ArgumentException($"heads {heads} must divide dModel {dModel}.", nameof(heads));
        (DModel, Heads, Block, LocalBlocks, VertStride) = (dModel, heads, block, localBlocks, vertStride);
        residues = S2Pattern.Residues(heads, vertStride);
        qkv = nn.Linear(dModel, 3 * dModel);
        proj = nn.Linear(dModel, dModel);
        RegisterComponents();
    }

    public int DModel { get; }
    public int Heads { get; }
    public int Block { get; }
    public int LocalBlocks { get; }
    public int VertStride { get; }

    /// <summary>The block pattern for sequences of up to <paramref name="seqLen"/> tokens (cached; rebuilt when T grows).</summary>
    public BlockMask Pattern(int seqLen)
    {
        Guard.Positive(seqLen, nameof(seqLen));
        if (pattern is null || pattern.MaxLength < seqLen)
            pattern = S2Pattern.LocalStride(Heads, seqLen, Block, LocalBlocks, VertStride);
        return pattern;
    }

    /// <summary>Whether head <paramref name="head"/> at query position <paramref name="query"/> reads key position <paramref name="key"/>.</summary>
    public bool Reads(int head, long query, long key)
    {
        if (key > query || key < 0) return false;
        long i = query / Block, j = key / Block;
        return residues[head] is not int r || i - j < LocalBlocks || j % VertStride == r;
    }

    public override Tensor forward(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        Guard.Dim(x, 2, DModel, nameof(x), "width");
        using var scope = NewDisposeScope();
        var (q, k, v) = Split(x);
        var (o, _) = BlockSparseAttention.Forward(q, k, v, Pattern((int)x.shape[1]));
        return proj.call(o.reshape(x.shape[0], x.shape[1], DModel)).MoveToOuterDisposeScope();
    }

    public MixerState NewState(long batch, ScalarType dtype, Device device) =>
        new CacheState(new KvCache(batch, Heads, DModel / Heads, DModel / Heads, dtype, device));

    /// <summary>One token: append (k_t, v_t) to the full cache, attend per head over the key positions its pattern reads.</summary>
    public Tensor Step(Tensor xT, MixerState state)
    {
        Guard.Rank(xT, 2, nameof(xT), "B, d");
        Guard.Dim(xT, 1, DModel, nameof(xT), "width");
        if (state is not CacheState s) throw new ArgumentException($"state must come from S2SelfAttention.NewState, got {state?.GetType().Name}.", nameof(state));
        using var scope = NewDisposeScope();
        var (q, k, v) = Split(xT.unsqueeze(1));                                             // [B, 1, H, Dh]
        s.Cache.Append(k, v);
        long position = s.Cache.Length - 1;
        var keep = new bool[Heads * (position + 1)];
        for (int h = 0; h < Heads; h++)
            for (long key = 0; key <= position; key++) keep[h * (position + 1) + key] = Reads(h, position, key);
        var mask = torch.tensor(keep, new long[] { 1, Heads, 1, position + 1 }, device: xT.device);
        using var r = ReferenceAttention.Softmax(q, s.Cache.Keys, s.Cache.Values, causal: false, mask: mask);
        s.Advance();
        return proj.call(r.Output.reshape(xT.shape[0], DModel)).MoveToOuterDisposeScope();
    }

    (Tensor Q, Tensor K, Tensor V) Split(Tensor x)
    {
        long b = x.shape[0], t = x.shape[1];
        var parts = qkv.call(x).view(b, t, 3, Heads, DModel / Heads).unbind(2);
        return (parts[0], parts[1], parts[2]);
    }

    /// <summary>The full KV cache (every head keeps every key).</summary>
    sealed class CacheState(KvCache cache) : MixerState
    {
        public KvCache Cache { get; } = cache;
        public override long Bytes => Cache.Bytes;
        public override void Dispose() => Cache.Dispose();
    }
}
