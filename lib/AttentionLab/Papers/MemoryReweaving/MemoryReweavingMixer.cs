using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.MemoryReweaving;

/// <summary>
/// [ours] A TinyGpt mixer for P32: sliding-window attention on the <see cref="AttentionMixer"/> base (the limited backbone the
/// spec asks for), which captures its input into a shared <see cref="LayeredStateBuffer"/> when its layer is a source layer,
/// and at the target layer adds the <see cref="MemoryReweaver"/>'s gated reconstruction. Hooks: <c>hook_attn_scores</c> /
/// <c>hook_pattern</c> carry the window; the reweave term is added after <c>hook_z</c>, in <see cref="Output"/>.
/// </summary>
/// <remarks>
/// y_t = W_O concat_h Σ_{t−W &lt; s ≤ t} softmax_s(q_t·k_s/√D) v_s   (the SWA backbone)
///       + g_t ⊙ W_o m_t                                         (target layer only; <see cref="MemoryReweaver.Reweave"/>)
/// The mixer's input x = LN₁(h^ℓ) is what layer ℓ captures: the block adds y to the residual, so the reweave lands in h.
/// </remarks>
public sealed class MemoryReweavingMixer : AttentionMixer
{
    readonly MemoryReweaver? reweaver;
    readonly LayeredStateBuffer? buffer;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H.</param>
    /// <param name="windowKeys">W: keys each query of the backbone attends, itself included.</param>
    /// <param name="layer">this mixer's layer index.</param>
    /// <param name="buffer">the shared buffer (null: a plain SWA mixer, the backbone).</param>
    /// <param name="targetLayer">L*: the layer that reweaves (ignored without a buffer).</param>
    public MemoryReweavingMixer(int dModel, int heads, int windowKeys, int layer, LayeredStateBuffer? buffer = null, int targetLayer = -1)
        : base(nameof(MemoryReweavingMixer), dModel, heads)
    {
        Guard.Positive(windowKeys, nameof(windowKeys));
        if (layer < 0) throw new ArgumentException($"layer must be ≥ 0, got {layer}.", nameof(layer));
        if (buffer is not null && buffer.Window != windowKeys)
            throw new ArgumentException($"the buffer's window {buffer.Window} must equal the mixer's windowKeys {windowKeys}.", nameof(buffer));
        (WindowKeys, Layer, this.buffer) = (windowKeys, layer, buffer);
        if (buffer is not null && layer == targetLayer) reweaver = new MemoryReweaver(dModel, heads, targetLayer, buffer.Layers.ToArray());
        RegisterComponents();
    }

    /// <summary>W.</summary>
    public int WindowKeys { get; }
    /// <summary>This mixer's layer.</summary>
    public int Layer { get; }
    /// <summary>The reweaving module (target layer only), else null.</summary>
    public MemoryReweaver? Reweaver => reweaver;

    /// <summary>Capture (source layers), then the window attention.</summary>
    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        if (buffer is not null && buffer.IsSource(Layer)) buffer.Capture(Layer, x);                // h^ℓ of this pass
        var pos = torch.arange(q.size(1), device: q.device);
        return Attend(q, k, v, pos, pos).Z;
    }

    /// <summary>s_ts = q_t·k_s/√D inside the window t − W &lt; s ≤ t, −∞ elsewhere.</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys)
    {
        var s = base.Scores(q, k, qPos, kPos, cachedKeys: true);
        if (cachedKeys) return s;
        return s.masked_fill(SlidingWindowAttention.Visible(qPos, kPos, WindowKeys).logical_not(), double.NegativeInfinity);
    }

    /// <summary>The backbone's W_O projection, plus the reweave term at the target layer.</summary>
    protected override Tensor Output(Tensor z, Tensor x)
    {
        var y = base.Output(z, x);
        return reweaver is null ? y : y + reweaver.Reweave(x, buffer!);
    }

    /// <summary>No decode form here: the task reads whole sequences (the buffer's bytes are reported by formula).</summary>
    public override bool CanStream => false;

    protected override MixerState CreateState(long batch, ScalarType dtype, Device device) =>
        throw new InvalidOperationException("MemoryReweavingMixer has no decode state in this library: run it on whole sequences.");
}
