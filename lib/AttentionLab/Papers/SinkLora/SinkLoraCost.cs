using AttentionLab.Attention;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.SinkLora;

/// <summary>KV-cache bytes per token at one width: the formula and a measurement from a live evicting cache.</summary>
/// <param name="Width">"smoke" or "full".</param>
/// <param name="Layers">L.</param>
/// <param name="DModel">d.</param>
/// <param name="Heads">H.</param>
/// <param name="Formula">2 · L · H · Dh · 4 bytes (float32 keys and values).</param>
/// <param name="Measured">Bytes a streamed model's caches hold per token (all layers, one sequence).</param>
public sealed record KvFootprint(string Width, int Layers, int DModel, int Heads, long Formula, long Measured);

/// <summary>The serving cost the paper's H2O part trades against: KV bytes per token (issue 13 item 4).</summary>
public static class SinkLoraCost
{
    /// <summary>2 · L · H · Dh · element bytes: the keys and values one token leaves in every layer's cache.</summary>
    public static long KvBytesPerToken(TinyGptConfig config, int elementBytes = 4)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (elementBytes < 1) throw new ArgumentException($"elementBytes must be positive, got {elementBytes}.", nameof(elementBytes));
        return 2L * config.Layers * config.Heads * config.HeadDim * elementBytes;
    }

    /// <summary>
    /// Streams <paramref name="tokens"/> tokens of one sequence through a fresh float32 model of <paramref name="config"/> with an
    /// unbounded evicting cache (the H2O machinery) and reads the bytes its caches hold per token.
    /// </summary>
    public static long MeasureKvBytesPerToken(TinyGptConfig config, int tokens = 3)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (tokens < 1) throw new ArgumentException($"tokens must be positive, got {tokens}.", nameof(tokens));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var model = new TinyGpt(config);
        using var state = model.NewState(1, _ => KvPolicy.Full);
        for (int t = 0; t < tokens; t++) model.Step(torch.tensor(new long[] { t % Math.Max(1, config.VocabSize) }), state);
        return state.Bytes / tokens;
    }

    /// <summary>The footprint row of one width.</summary>
    public static KvFootprint Footprint(string width, TinyGptConfig config) =>
        new(width, config.Layers, config.DModel, config.Heads, KvBytesPerToken(config), MeasureKvBytesPerToken(config));
}
