using AttentionLab.Attention;
using AttentionLab.Models;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Based;

/// <summary>The sequence mixers a BASED-style stack is built from.</summary>
public enum BasedLayerKind
{
    /// <summary>Gated short convolution <see cref="BaseConv"/>.</summary>
    BaseConv,
    /// <summary>Taylor linear attention <see cref="BasedLinearAttention"/>.</summary>
    LinearAttention,
    /// <summary>Sliding-window softmax attention <see cref="SlidingWindowAttention"/>.</summary>
    SlidingWindow,
    /// <summary>Full causal softmax attention (<see cref="CausalSelfAttention"/>, KV cache grows with t).</summary>
    Attention,
    /// <summary>
    /// Pure linear attention: BASED's layer with φ = elu + 1 (Katharopoulos et al.) instead of the Taylor map, normalised,
    /// q and k projected to d′ — the baseline BASED's feature map is compared with at equal state size.
    /// </summary>
    PlainLinearAttention,
}

/// <summary>Sizes of the BASED mixers in a stack (d and H come from the <see cref="TinyGptConfig"/>).</summary>
/// <param name="FeatureDim">d′ of the linear attention (16).</param>
/// <param name="WindowSize">
/// Based's <c>window_size</c> W of the sliding-window attention, in Based's convention: each query attends ⌊W/2⌋ + 1 keys
/// (<see cref="BasedWindow.KeysOfWindowSize"/>). Default 128, Based's default and the 360M config (65 keys).
/// </param>
/// <param name="ConvKernel">k of BaseConv (3).</param>
/// <param name="PackSymmetric">packed Taylor map.</param>
/// <param name="LinearHeads">H of the linear attention; null: the config's heads.</param>
/// <param name="WindowKeys">the sliding window counted in keys per query (itself included); set, it replaces <paramref name="WindowSize"/>.</param>
public sealed record BasedMixerConfig(int FeatureDim = 16, int WindowSize = BasedWindow.DefaultWindowSize, int ConvKernel = 3,
    bool PackSymmetric = true, int? LinearHeads = null, int? WindowKeys = null)
{
    /// <summary>Keys each sliding-window query attends: <see cref="WindowKeys"/>, else ⌊<see cref="WindowSize"/>/2⌋ + 1.</summary>
    public int AttendedKeys => WindowKeys ?? BasedWindow.KeysOfWindowSize(WindowSize);
}

/// <summary>
/// Stacks of <see cref="TinyGpt"/> blocks whose mixer of layer ℓ is <c>pattern[ℓ mod |pattern|]</c> (zoology's
/// <c>Hybrid</c> mixer). <see cref="Paper360M"/> is the paper's layout; <see cref="Mqar"/> is zoology's 2-layer
/// MQAR layout (BaseConv, then the mixer under study).
/// </summary>
public static class BasedStack
{
    /// <summary>The 360M config: linear attention at ℓ ≡ 1, sliding window at ℓ ≡ 2 (mod 5), BaseConv elsewhere.</summary>
    public static IReadOnlyList<BasedLayerKind> Paper360M { get; } = new[]
    {
        BasedLayerKind.BaseConv, BasedLayerKind.LinearAttention, BasedLayerKind.SlidingWindow, BasedLayerKind.BaseConv, BasedLayerKind.BaseConv,
    };

    /// <summary>zoology's Figure-2 MQAR models: [BaseConv(k = 3), <paramref name="mixer"/>].</summary>
    public static IReadOnlyList<BasedLayerKind> Mqar(BasedLayerKind mixer) => new[] { BasedLayerKind.BaseConv, mixer };

    /// <summary>The mixer factory for <see cref="TinyGpt"/>.</summary>
    public static Func<int, nn.Module<Tensor, Tensor>> Mixers(TinyGptConfig config, IReadOnlyList<BasedLayerKind> pattern, BasedMixerConfig? mixers = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(pattern);
        if (pattern.Count == 0) throw new ArgumentException("pattern must name at least one layer kind.", nameof(pattern));
        var m = mixers ?? new BasedMixerConfig();
        return layer => pattern[layer % pattern.Count] switch
        {
            BasedLayerKind.BaseConv => new BaseConv(config.DModel, m.ConvKernel),
            BasedLayerKind.LinearAttention => new BasedLinearAttention(config.DModel, m.FeatureDim, m.LinearHeads ?? config.Heads, m.PackSymmetric),
            BasedLayerKind.SlidingWindow => new SlidingWindowAttention(config.DModel, config.Heads, m.AttendedKeys),
            BasedLayerKind.PlainLinearAttention =>
                new BasedLinearAttention(config.DModel, m.FeatureDim, m.LinearHeads ?? config.Heads, featureMap: FeatureMaps.EluPlusOne),
            BasedLayerKind.Attention => new CausalSelfAttention(config.DModel, config.Heads, config.Positions, config.RopeBase),
            var k => throw new ArgumentException($"unknown layer kind {k}.", nameof(pattern)),
        };
    }

    /// <summary>The model: forward in parallel, <see cref="TinyGpt.Step"/> with every layer's streaming state.</summary>
    public static TinyGpt Create(TinyGptConfig config, IReadOnlyList<BasedLayerKind> pattern, BasedMixerConfig? mixers = null) =>
        new(config, Mixers(config, pattern, mixers));
}
