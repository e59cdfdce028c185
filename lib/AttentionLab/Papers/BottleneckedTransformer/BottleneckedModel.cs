using AttentionLab.Models;
using static TorchSharp.torch;

namespace AttentionLab.Papers.BottleneckedTransformer;

/// <summary>
/// A backbone <see cref="TinyGpt"/> (with <see cref="ConsolidatingAttention"/> mixers) and its <see cref="CacheProcessor"/>,
/// as one trainable module: forward(ids) decodes step by step, steps closing at the delimiter token, and rewrites the cache
/// at every step boundary (<see cref="BottleneckedRunner"/>). Gradients reach the processor through the rewrites.
/// </summary>
public sealed class BottleneckedModel : nn.Module<Tensor, Tensor>
{
    readonly TinyGpt backbone;
    readonly CacheProcessor processor;

    /// <param name="backbone">The backbone (no positions, consolidating mixers).</param>
    /// <param name="processor">The processor (fits the backbone).</param>
    /// <param name="topK">k of the reconsolidation set.</param>
    /// <param name="delimiterId">The token that closes a step (a newline).</param>
    public BottleneckedModel(TinyGpt backbone, CacheProcessor processor, int topK, long delimiterId) : base(nameof(BottleneckedModel))
    {
        this.backbone = backbone ?? throw new ArgumentNullException(nameof(backbone));
        this.processor = processor ?? throw new ArgumentNullException(nameof(processor));
        if (topK < 0) throw new ArgumentException($"topK must be ≥ 0, got {topK}.", nameof(topK));
        (TopK, DelimiterId) = (topK, delimiterId);
        RegisterComponents();
    }

    public TinyGpt Backbone => backbone;
    public CacheProcessor Processor => processor;
    public int TopK { get; }
    public long DelimiterId { get; }
    /// <summary>Trainable parameters (backbone + processor).</summary>
    public long ParameterCount => parameters().Sum(p => p.numel());

    /// <summary>ids [B, T] → logits [B, T, V], step by step with consolidation.</summary>
    public override Tensor forward(Tensor ids) => Decode(ids).Logits;

    /// <summary>The full output of the step-wise run on ids [B, T] (delimiters aligned across rows).</summary>
    public BottleneckedOutput Decode(Tensor ids, RewriteObserver? observe = null) =>
        BottleneckedRunner.Run(backbone, processor, ids, BottleneckedRunner.StepEnds(ids, DelimiterId), TopK, observe);
}
