using AttentionLab.Core;
using AttentionLab.Interp;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>How <see cref="EncoderClassifier"/> turns the hidden states [B, T, D] into one vector per sequence.</summary>
public enum EncoderPooling
{
    /// <summary>h_[CLS]: the hidden state at position 0.</summary>
    Cls,
    /// <summary>Mean of the hidden states over real (unpadded) tokens.</summary>
    Mean,
}

/// <summary>
/// A bidirectional encoder with a classification head: <see cref="MiniLm"/>'s post-LN BERT blocks (random at any size,
/// or the pretrained all-MiniLM-L6-v2 through <see cref="FromPretrained"/>), a pooling of the last hidden states, and a
/// linear head → logits [B, C]. One code path for both, so the pretrained MiniLM fine-tunes exactly as a small random
/// encoder trains. Hooked with the encoder's TransformerLens names (blocks.{L}.attn.hook_pattern, blocks.{L}.hook_resid_pre, …)
/// plus hook_pooled [B, D]; a per-head mask ξ [L, H] or [B, L, H] multiplies each head's output (head pruning, Michel et al.).
/// </summary>
/// <remarks>
/// h = MiniLm(ids, mask) (each layer: y = W_O concat_h(ξ_{l,h} z_h) + b_O inside the post-LN block);
/// pooled = h_0 (Cls) or Σ_t m_t h_t / Σ_t m_t (Mean);  logits = W_c pooled + b_c.
/// </remarks>
public sealed class EncoderClassifier : nn.Module<Tensor, Tensor, Tensor>, IHookedModel
{
    readonly MiniLm encoder;
    readonly Linear head;
    readonly HookPoint hook_pooled = new();
    readonly Dictionary<string, HookPoint> points;

    /// <param name="encoder">The encoder (its parameters are made trainable or frozen per <paramref name="trainEncoder"/>).</param>
    /// <param name="classes">C ≥ 2.</param>
    /// <param name="pooling">Cls or Mean.</param>
    /// <param name="trainEncoder">True: fine-tune the encoder with the head; false: freeze it (train the head only).</param>
    /// <param name="padId">The padding id that <see cref="IHookedModel.Run"/> masks out (MiniLM's [PAD] = 0); null = no padding.</param>
    public EncoderClassifier(MiniLm encoder, int classes, EncoderPooling pooling = EncoderPooling.Mean, bool trainEncoder = true, int? padId = 0)
        : base(nameof(EncoderClassifier))
    {
        ArgumentNullException.ThrowIfNull(encoder);
        if (classes < 2) throw new ArgumentException($"classes must be at least 2, got {classes}.", nameof(classes));
        if (!Enum.IsDefined(pooling)) throw new ArgumentException($"pooling is not a known EncoderPooling: {(int)pooling}.", nameof(pooling));
        if (padId is { } p && (p < 0 || p >= encoder.Config.VocabSize))
            throw new ArgumentException($"padId must be in [0, {encoder.Config.VocabSize}), got {p}.", nameof(padId));
        this.encoder = encoder;
        head = nn.Linear(encoder.Config.Hidden, classes);
        (Classes, Pooling, PadId) = (classes, pooling, padId);
        RegisterComponents();
        head.to(encoder.Blocks[0].attn.Qkv.weight!.dtype).to(encoder.Device);           // the head follows the encoder's dtype and device
        foreach (var parameter in encoder.parameters()) parameter.requires_grad = trainEncoder;
        points = ((IHookedModel)encoder).HookPoints.ToDictionary(kv => kv.Key, kv => kv.Value);
        hook_pooled.Name = "hook_pooled";
        points["hook_pooled"] = hook_pooled;
    }

    /// <summary>A randomly initialised classifier of MiniLM's architecture at the size <paramref name="config"/> gives.</summary>
    public static EncoderClassifier Random(MiniLmConfig config, int classes, EncoderPooling pooling = EncoderPooling.Mean, int? padId = 0)
    {
        ArgumentNullException.ThrowIfNull(config);
        return new EncoderClassifier(new MiniLm(config), classes, pooling, trainEncoder: true, padId);
    }

    /// <summary>all-MiniLM-L6-v2 (<see cref="MiniLm.LoadPretrained"/>, offline) with a fresh head, ready to fine-tune.</summary>
    public static EncoderClassifier FromPretrained(int classes, EncoderPooling pooling = EncoderPooling.Mean, bool trainEncoder = true,
                                                   string? path = null, Device? device = null) =>
        new(MiniLm.LoadPretrained(path, device), classes, pooling, trainEncoder, padId: 0);

    /// <summary>The encoder (its tokenizer when pretrained: <see cref="MiniLm.Tokenizer"/>).</summary>
    public MiniLm Encoder => encoder;
    /// <summary>The linear head W_c [C, D].</summary>
    public Linear Head => head;
    public int Classes { get; }
    public EncoderPooling Pooling { get; }
    /// <summary>The id <see cref="IHookedModel.Run"/> treats as padding (null: none).</summary>
    public int? PadId { get; }

    /// <summary>Logits [B, C] of ids [B, T] with attention mask [B, T] (1 = token, 0 = padding).</summary>
    public override Tensor forward(Tensor inputIds, Tensor attentionMask) => Logits(inputIds, attentionMask);

    /// <summary>Logits [B, C]; <paramref name="headMask"/> ξ [L, H] or [B, L, H] (null = every head on) gates each head's output.</summary>
    public Tensor Logits(Tensor inputIds, Tensor attentionMask, Tensor? headMask = null)
    {
        using var scope = NewDisposeScope();
        var hidden = Hidden(inputIds, attentionMask, headMask);
        var pooled = hook_pooled.call(Pool(hidden, attentionMask, Pooling));
        return head.call(pooled).MoveToOuterDisposeScope();
    }

    /// <summary>The encoder's last hidden states [B, T, D] under the head mask (see <see cref="Logits"/>).</summary>
    public Tensor Hidden(Tensor inputIds, Tensor attentionMask, Tensor? headMask = null)
    {
        var blocks = encoder.Blocks;
        if (headMask is null) return encoder.call(inputIds, attentionMask);
        int layers = blocks.Count, heads = encoder.Config.Heads;
        Guard.NotNull(headMask, nameof(headMask));
        bool perLayer = headMask.dim() == 2 && headMask.size(0) == layers && headMask.size(1) == heads;
        bool perSequence = headMask.dim() == 3 && headMask.size(0) == inputIds.size(0) && headMask.size(1) == layers && headMask.size(2) == heads;
        if (!perLayer && !perSequence)
            throw new ArgumentException(
                $"headMask must be [L, H] = [{layers}, {heads}] or [B, L, H] = [{inputIds.size(0)}, {layers}, {heads}], got {Guard.ShapeText(headMask)}.",
                nameof(headMask));
        using var scope = NewDisposeScope();
        try
        {
            for (int l = 0; l < layers; l++) blocks[l].attn.HeadGate = headMask.select(perLayer ? 0 : 1, l);   // ξ_l: [H] or [B, H]
            return encoder.call(inputIds, attentionMask).MoveToOuterDisposeScope();
        }
        finally
        {
            foreach (var block in blocks) block.attn.HeadGate = null;
        }
    }

    /// <summary>Cls: hidden[:, 0]; Mean: Σ_t m_t h_t / Σ_t m_t over the mask [B, T] (a row with no token gives 0).</summary>
    public static Tensor Pool(Tensor hidden, Tensor attentionMask, EncoderPooling pooling)
    {
        Guard.Rank(hidden, 3, nameof(hidden), "B, T, D");
        Guard.Rank(attentionMask, 2, nameof(attentionMask), "B, T");
        if (attentionMask.size(0) != hidden.size(0) || attentionMask.size(1) != hidden.size(1))
            throw new ArgumentException(
                $"attentionMask {Guard.ShapeText(attentionMask)} must be [B, T] of hidden {Guard.ShapeText(hidden)}.", nameof(attentionMask));
        if (pooling == EncoderPooling.Cls) return hidden.select(1, 0);
        if (pooling != EncoderPooling.Mean) throw new ArgumentException($"pooling is not a known EncoderPooling: {(int)pooling}.", nameof(pooling));
        using var scope = NewDisposeScope();
        var m = attentionMask.ne(0).to(hidden.dtype).unsqueeze(-1);                      // m_t [B, T, 1]
        return ((hidden * m).sum(1) / m.sum(1).clamp_min(1)).MoveToOuterDisposeScope();
    }

    // ---------------------------------------------------------------- hooks

    int IHookedModel.LayerCount => encoder.Config.Layers;
    int IHookedModel.HeadCount => encoder.Config.Heads;
    /// <summary>The encoder's hook points (blocks.{L}.…, hook_embed, …) and hook_pooled.</summary>
    public IReadOnlyDictionary<string, HookPoint> HookPoints => points;

    /// <summary>IHookedModel: logits [B, C] of ids [B, T], with padding where ids = <see cref="PadId"/>.</summary>
    Tensor IHookedModel.Run(Tensor input)
    {
        Guard.Rank(input, 2, nameof(input), "B, T token ids");
        using var scope = NewDisposeScope();
        var mask = PadId is { } pad ? input.ne(pad).to(int64) : torch.ones_like(input);
        return Logits(input, mask).MoveToOuterDisposeScope();
    }
}
