using AttentionLab.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.BottleneckedTransformer;

/// <summary>
/// The Cache Processor [ours for shapes, spec §2]: a one-layer <b>bidirectional</b> Transformer over the set R ∪ P of
/// cache entries of one backbone layer, shared across layers through a layer embedding; it outputs ΔK, ΔV for every entry.
/// The output layer starts at zero, so a fresh processor leaves the cache — and the model — exactly as the backbone.
/// </summary>
/// <remarks>
/// z_j = [K_j ; V_j] (heads flattened, H·(Dk + Dv))
/// h_j = W_in z_j + E_type[type_j] + E_off[offset_j] + E_layer[ℓ]          type 0 = recent step R, 1 = reconsolidated P
/// h   = h + MHA(LN₁(h))            (no mask: every entry sees every entry)
/// h   = h + W₂ GELU(W₁ LN₂(h))
/// [ΔK_j ; ΔV_j] = W_out LN₃(h_j)      W_out, b_out = 0 at init
/// </remarks>
public sealed class CacheProcessor : nn.Module<Tensor, Tensor>
{
    readonly Linear input, qkv, proj, fc1, fc2, output;
    readonly Embedding typeEmbed, offsetEmbed, layerEmbed;
    readonly LayerNorm ln1, ln2, ln3;

    /// <param name="layers">Backbone layers ℓ (one layer embedding each).</param>
    /// <param name="heads">Backbone heads H.</param>
    /// <param name="keyDim">Backbone Dk.</param>
    /// <param name="valueDim">Backbone Dv.</param>
    /// <param name="width">d_p, the processor's width.</param>
    /// <param name="processorHeads">Heads of the processor's attention (must divide width).</param>
    /// <param name="maxOffset">Offsets are clamped to maxOffset − 1.</param>
    public CacheProcessor(int layers, int heads, int keyDim, int valueDim, int width = 32, int processorHeads = 2, int maxOffset = 16)
        : base(nameof(CacheProcessor))
    {
        Guard.Positive(layers, nameof(layers)); Guard.Positive(heads, nameof(heads));
        Guard.Positive(keyDim, nameof(keyDim)); Guard.Positive(valueDim, nameof(valueDim));
        Guard.Positive(width, nameof(width)); Guard.Positive(processorHeads, nameof(processorHeads)); Guard.Positive(maxOffset, nameof(maxOffset));
        if (width % processorHeads != 0) throw new ArgumentException($"processorHeads {processorHeads} must divide width {width}.", nameof(processorHeads));
        (Layers, Heads, KeyDim, ValueDim, Width, ProcessorHeads, MaxOffset) = (layers, heads, keyDim, valueDim, width, processorHeads, maxOffset);
        int entry = heads * (keyDim + valueDim);
        input = nn.Linear(entry, width);
        typeEmbed = nn.Embedding(2, width);
        offsetEmbed = nn.Embedding(maxOffset, width);
        layerEmbed = nn.Embedding(layers, width);
        ln1 = nn.LayerNorm(width); ln2 = nn.LayerNorm(width); ln3 = nn.LayerNorm(width);
        qkv = nn.Linear(width, 3 * width);
        proj = nn.Linear(width, width);
        fc1 = nn.Linear(width, 2 * width);
        fc2 = nn.Linear(2 * width, width);
        output = nn.Linear(width, entry);
        using (torch.no_grad())
        {
            foreach (var e in new[] { typeEmbed, offsetEmbed, layerEmbed }) nn.init.normal_(e.weight!, 0, 0.02);
            output.weight!.zero_(); output.bias!.zero_();                                 // zero-init: starts as the backbone
        }
        RegisterComponents();
    }

    public int Layers { get; }
    public int Heads { get; }
    public int KeyDim { get; }
    public int ValueDim { get; }
    /// <summary>d_p.</summary>
    public int Width { get; }
    public int ProcessorHeads { get; }
    public int MaxOffset { get; }
    /// <summary>W_out [H·(Dk+Dv), d_p] (zero at init).</summary>
    public Linear Output => output;

    internal (Linear Input, Linear Qkv, Linear Proj, Linear Fc1, Linear Fc2, Linear Output, Embedding Type, Embedding Offset, Embedding Layer,
        LayerNorm Ln1, LayerNorm Ln2, LayerNorm Ln3) Parts => (input, qkv, proj, fc1, fc2, output, typeEmbed, offsetEmbed, layerEmbed, ln1, ln2, ln3);

    /// <summary>Not used: call <see cref="Process"/> (the processor needs the entry types, offsets and layer).</summary>
    public override Tensor forward(Tensor x) => throw new InvalidOperationException("call CacheProcessor.Process(k, v, types, offsets, layer).");

    /// <summary>
    /// ΔK [B, m, H, Dk], ΔV [B, m, H, Dv] for the entries k [B, m, H, Dk], v [B, m, H, Dv] of backbone layer
    /// <paramref name="layer"/>, with <paramref name="types"/> and <paramref name="offsets"/> [m] (int64) shared by the batch.
    /// </summary>
    public (Tensor DK, Tensor DV) Process(Tensor k, Tensor v, Tensor types, Tensor offsets, int layer)
    {
        Check(k, v, types, offsets, layer);
        using var scope = NewDisposeScope();
        long b = k.size(0), m = k.size(1);
        var z = torch.cat(new[] { k.reshape(b, m, -1), v.reshape(b, m, -1) }, -1);      // [K_j ; V_j]
        var h = input.call(z) + typeEmbed.call(types) + offsetEmbed.call(offsets.clamp(0, MaxOffset - 1))
                + layerEmbed.call(torch.tensor((long)layer, device: k.device));
        h = h + SelfAttention(ln1.call(h));                                              // bidirectional
        h = h + fc2.call(nn.functional.gelu(fc1.call(ln2.call(h))));
        var d = output.call(ln3.call(h));                                                // [B, m, H(Dk+Dv)]
        var dk = d.narrow(-1, 0, Heads * KeyDim).reshape(b, m, Heads, KeyDim);
        var dv = d.narrow(-1, Heads * KeyDim, Heads * ValueDim).reshape(b, m, Heads, ValueDim);
        return (dk.MoveToOuterDisposeScope(), dv.MoveToOuterDisposeScope());
    }

    /// <summary>softmax(Q Kᵀ / √d_h) V over all m entries (no mask), per processor head: [B, m, d_p].</summary>
    Tensor SelfAttention(Tensor x)
    {
        long b = x.size(0), m = x.size(1), dh = Width / ProcessorHeads;
        var parts = qkv.call(x).view(b, m, 3, ProcessorHeads, dh).permute(2, 0, 3, 1, 4);  // [3, B, Hp, m, dh]
        var (q, k, v) = (parts[0], parts[1], parts[2]);
        var p = (q.matmul(k.transpose(-2, -1)) / Math.Sqrt(dh)).softmax(-1);
        return proj.call(p.matmul(v).permute(0, 2, 1, 3).reshape(b, m, Width));
    }

    internal void Check(Tensor k, Tensor v, Tensor types, Tensor offsets, int layer)
    {
        Guard.Rank(k, 4, nameof(k), "B, m, H, Dk");
        Guard.Rank(v, 4, nameof(v), "B, m, H, Dv");
        if (k.size(2) != Heads || k.size(3) != KeyDim) throw new ArgumentException($"k {Guard.ShapeText(k)} must have H = {Heads}, Dk = {KeyDim}.", nameof(k));
        if (v.size(0) != k.size(0) || v.size(1) != k.size(1) || v.size(2) != Heads || v.size(3) != ValueDim)
            throw new ArgumentException($"v {Guard.ShapeText(v)} must be [{k.size(0)}, {k.size(1)}, {Heads}, {ValueDim}].", nameof(v));
        Guard.Rank(types, 1, nameof(types), "m");
        Guard.Rank(offsets, 1, nameof(offsets), "m");
        if (types.size(0) != k.size(1)) throw new ArgumentException($"types has {types.size(0)} entries, k {k.size(1)}.", nameof(types));
        if (offsets.size(0) != k.size(1)) throw new ArgumentException($"offsets has {offsets.size(0)} entries, k {k.size(1)}.", nameof(offsets));
        if (layer < 0 || layer >= Layers) throw new ArgumentException($"layer {layer} must lie in [0, {Layers}).", nameof(layer));
    }
}
