using static TorchSharp.torch;

namespace AttentionLab.Interp;

/// <summary>
/// A model whose activations are exposed as named <see cref="HookPoint"/>s (TransformerLens names). The Interp tools
/// (<see cref="HookedModel"/>, <see cref="HeadDetector"/>, <see cref="Ablation"/>, <see cref="Patching"/>, <see cref="HeadScores"/>)
/// work on any implementation.
/// </summary>
public interface IHookedModel
{
    /// <summary>Number of blocks (resolves negative layers).</summary>
    int LayerCount { get; }
    /// <summary>Attention heads per block.</summary>
    int HeadCount { get; }
    /// <summary>Every hook point by full name, in forward order.</summary>
    IReadOnlyDictionary<string, HookPoint> HookPoints { get; }
    /// <summary>The model's output (logits) for <paramref name="input"/>, computed through <c>.call</c> so hooks fire.</summary>
    Tensor Run(Tensor input);
}
