using AttentionLab.Core;
using AttentionLab.Models;

namespace AttentionLab.Papers.Based;

/// <summary>
/// Based's sliding-window convention on the shared <see cref="SlidingWindowAttention"/> (which counts keys).
/// Based's <c>SlidingAttention(window_size=W)</c> passes flash-attn's <c>window_size=(W // 2, 0)</c>, so query p attends to
/// keys p − ⌊W/2⌋ … p: ⌊W/2⌋ + 1 keys (W = 64 → 33, W = 128 → 65). (zoology's <c>SlidingAttn(block_size=b)</c> counts a
/// third way: keys p − b … p, b + 1 keys.)
/// </summary>
public static class BasedWindow
{
    /// <summary>Based's <c>SlidingAttention</c> default and the 360M config's <c>window_size</c>: 128 (attends 65 keys).</summary>
    public const int DefaultWindowSize = 128;

    /// <summary>Keys attended by Based's <c>window_size</c> W: ⌊W/2⌋ + 1 (flash-attn's left window W // 2, plus the query's own key).</summary>
    public static int KeysOfWindowSize(int windowSize)
    {
        Guard.Positive(windowSize, nameof(windowSize));
        return windowSize / 2 + 1;
    }

    /// <summary>
    /// The layer Based builds for <c>SlidingAttention(embed_dim=d, num_heads=H, window_size=W)</c>: ⌊W/2⌋ + 1 keys per query
    /// (flash-attn window (⌊W/2⌋, 0)). Default W = 128, Based's default and the 360M config (65 keys).
    /// </summary>
    public static SlidingWindowAttention FromWindowSize(int dModel, int heads, int windowSize = DefaultWindowSize) =>
        new(dModel, heads, KeysOfWindowSize(windowSize));
}
