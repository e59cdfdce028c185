using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Hcam;

/// <summary>
/// A TinyGpt mixer with local attention and, optionally, an HCAM read of the sequence's own past chunks, added together
/// (the paper adds HCAM's output to the residual stream beside the local Transformer attention). On the
/// <see cref="AttentionMixer"/> base: <c>hook_attn_scores</c> / <c>hook_pattern</c> carry the local window's scores and
/// weights; <c>hook_memory_pattern</c> carries HCAM's equivalent T×T weights (A_{t,jC+c} = w_tj·a_tjc,
/// <see cref="HcamAttention.DensePattern"/>), computed only while a hook listens, and the memory output is then A·v_mem,
/// so patching it changes the output.
/// </summary>
/// <remarks>
/// q, k, v = split_h(x W_QKV)                                           (the base projection, hooks hook_q/k/v)
/// z_local = softmax over the last <c>Window</c> keys (p − n &lt; s ≤ p) of q·k/√D, times v
/// memory (stop-gradient, as the official module): x̄ = sg(x);  summaries = mean over each chunk of k(x̄);
///   fine keys and values k(x̄ + PE_c), v(x̄ + PE_c) with PE_c the sinusoid of the reversed position C−1−c inside the chunk
/// z = z_local + HCAM(q, summaries, k_mem, v_mem)                       (<see cref="HcamAttention.Read"/>, top-k)
/// y = concat_h(z) W_O
/// The projections W_K, W_V still learn through the memory path (the official module projects the stored activations with
/// trainable weights); no gradient reaches the stored activations x̄.
/// </remarks>
public sealed class HcamMixer : AttentionMixer
{
    readonly HookPoint hook_memory_pattern = new();

    /// <param name="dModel">d.</param>
    /// <param name="heads">H (divides d).</param>
    /// <param name="chunkSize">C: positions per memory chunk.</param>
    /// <param name="topK">k: chunks read per query; 0 = local attention only (the local baseline).</param>
    /// <param name="window">local window in keys (default C).</param>
    /// <param name="memoryPositions">add the reversed in-chunk sinusoid to the memory before its projection (the official default).</param>
    public HcamMixer(int dModel, int heads, int chunkSize, int topK, int? window = null, bool memoryPositions = true)
        : base(nameof(HcamMixer), dModel, heads)
    {
        Guard.Positive(chunkSize, nameof(chunkSize));
        if (topK < 0) throw new ArgumentException($"topK must be ≥ 0 (0 = local only), got {topK}.", nameof(topK));
        Window = window ?? chunkSize;
        Guard.Positive(Window, nameof(window));
        (ChunkSize, TopK, MemoryPositions) = (chunkSize, topK, memoryPositions);
        RegisterComponents();
    }

    /// <summary>C.</summary>
    public int ChunkSize { get; }
    /// <summary>k (0: no memory read).</summary>
    public int TopK { get; }
    /// <summary>Keys of the local window.</summary>
    public int Window { get; }
    /// <summary>Whether the memory gets the reversed in-chunk sinusoid.</summary>
    public bool MemoryPositions { get; }
    /// <summary>HCAM's equivalent weights [B, H, T, T] (fires only while a hook listens).</summary>
    public HookPoint HookMemoryPattern => hook_memory_pattern;

    /// <summary>
    /// The last forward's memory read (selected chunks, weights, fine softmax) while <see cref="KeepLastRead"/> is on; null
    /// otherwise. Detached copies owned by the mixer (replaced by the next read).
    /// </summary>
    public HcamRead? LastRead { get; private set; }

    /// <summary>Keep <see cref="LastRead"/> after each forward (off by default: it holds tensors).</summary>
    public bool KeepLastRead { get; set; }

    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        var pos = torch.arange(q.size(1), device: q.device);
        var local = Attend(q, k, v, pos, pos).Z;                                          // window via Scores
        if (TopK == 0) return local;
        return local + MemoryRead(q, x);
    }

    /// <summary>s_ps = q_p·k_s/√D inside the window p − n &lt; s ≤ p, −∞ elsewhere.</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        var s = base.Scores(q, k, qPos, kPos, cachedKeys: true);
        if (cachedKeys) return s;
        return s.masked_fill(SlidingWindowAttention.Visible(qPos, kPos, Window).logical_not(), double.NegativeInfinity);
    }

    /// <summary>
    /// The HCAM part of z for queries q [B, T, H, D] over the memory built from the mixer input x [B, T, d] (stop-gradient on
    /// x): [B, T, H, D]. Public so tests can check that no gradient reaches the stored activations.
    /// </summary>
    public Tensor MemoryRead(Tensor q, Tensor x)
    {
        Guard.Rank(q, 4, nameof(q), "B, T, H, D");
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        long b = x.size(0), t = x.size(1);
        var stored = x.detach();                                                          // sg(x): memories are stored activations
        var (summaryKeys, _) = Split(stored);
        var summaries = HcamAttention.Summaries(summaryKeys, ChunkSize);                  // mean over each chunk
        var withPos = stored;
        if (MemoryPositions)
        {
            var pe = Positions.Sinusoidal(0, ChunkSize, DModel, stored.dtype, stored.device).flip(0);   // reversed in-chunk positions
            long chunks = (t + ChunkSize - 1) / ChunkSize;
            withPos = stored + pe.repeat(chunks, 1).narrow(0, 0, t).unsqueeze(0);
        }
        var (memK, memV) = Split(withPos);
        var read = HcamAttention.Read(q, summaries, memK, memV, ChunkSize, TopK);
        if (LastRead is { } previous) foreach (var tensor in new[] { previous.Z, previous.Selected, previous.Weights, previous.Fine }) tensor.Dispose();
        static Tensor Keep(Tensor x) => x.detach().clone().DetachFromDisposeScope();   // owned by the mixer until the next read
        LastRead = KeepLastRead ? new HcamRead(Keep(read.Z), Keep(read.Selected), Keep(read.Weights), Keep(read.Fine)) : null;
        if (hook_memory_pattern.HookCount == 0) return read.Z;
        var pattern = hook_memory_pattern.call(HcamAttention.DensePattern(read, t, ChunkSize));   // A [B, H, T, T]
        return Combine(pattern, memV);                                                    // z = A·v_mem
    }

    /// <summary>k, v [B, T, H, D] of x through the shared projection (no hooks: these are the memory's keys and values).</summary>
    (Tensor K, Tensor V) Split(Tensor x)
    {
        long b = x.size(0), t = x.size(1);
        var parts = Qkv.call(x).view(b, t, 3, Heads, KeyDim).unbind(2);
        return (parts[1], parts[2]);
    }

    /// <summary>No token-by-token decode form here: the experiment reads whole sequences (state bytes are reported by formula).</summary>
    public override bool CanStream => false;

    protected override MixerState CreateState(long batch, ScalarType dtype, Device device) =>
        throw new InvalidOperationException("HcamMixer has no decode state in this library: run it on whole sequences.");

    /// <summary>
    /// Bytes HCAM would hold to decode one sequence after <paramref name="tokens"/> tokens (float32): the stored activations
    /// T·d, one summary per complete chunk ⌊T/C⌋·d, and the local window's keys and values 2·n·d.
    /// </summary>
    public long StateBytes(long tokens)
    {
        long chunks = tokens / ChunkSize;
        long window = Math.Min(tokens, Window);
        return sizeof(float) * ((TopK == 0 ? 0 : tokens * DModel + chunks * DModel) + 2 * window * DModel);
    }
}
