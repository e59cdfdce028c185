using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionSinks;

/// <summary>
/// StreamingLLM's evaluation (Xiao et al. 2024): stream long sequences through a model token by token and report the
/// next-token loss per chunk, under a KV policy (dense cache, window only, sink + window) or the sliding window with
/// re-computation (every token re-reads the last w tokens from scratch: exact but w× the work). Streams [N, L] run side
/// by side (one cache per stream); the loss of a chunk is the mean over its positions and the N streams.
/// </summary>
public static class StreamingEval
{
    /// <summary>
    /// Mean next-token loss (nats) per chunk of <paramref name="chunk"/> positions of streams [N, L], decoding one token
    /// at a time; <paramref name="kvPolicy"/> null keeps every key (the dense cache).
    /// </summary>
    public static double[] PolicyLoss(TinyGpt model, TokenBatch stream, int chunk, Func<int, IKvPolicy>? kvPolicy = null) =>
        Chunked(PolicyLossPerToken(model, stream, kvPolicy), chunk);

    /// <summary>The per-position loss [L] (mean over the N streams) of <see cref="PolicyLoss"/>, in float64.</summary>
    public static double[] PolicyLossPerToken(TinyGpt model, TokenBatch stream, Func<int, IKvPolicy>? kvPolicy = null)
    {
        Check(model, stream, 1);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        model.eval();
        long n = stream.Length;
        using var state = model.NewState(stream.Count, kvPolicy);
        var losses = new List<Tensor>();
        for (long t = 0; t < n; t++)
        {
            using var stepScope = NewDisposeScope();
            var logits = model.Step(stream.Tokens.select(1, t), state);                              // [N, V]
            losses.Add(nn.functional.cross_entropy(logits, stream.Labels.select(1, t)).MoveToOuterDisposeScope());
        }
        return torch.stack(losses).to(ScalarType.Float64).cpu().data<double>().ToArray();
    }

    /// <summary>Loss per chunk when the prediction at t re-computes a forward pass over tokens [max(0, t − w + 1), t] only.</summary>
    public static double[] RecomputeWindowLoss(TinyGpt model, TokenBatch stream, int chunk, int window)
    {
        Check(model, stream, chunk);
        Guard.Positive(window, nameof(window));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        model.eval();
        long n = stream.Length, w = Math.Min(window, n);
        var perRow = new List<Tensor>();
        for (long r = 0; r < stream.Count; r++)
        {
            var tokens = stream.Tokens[r];
            var head = model.call(tokens.narrow(0, 0, w).unsqueeze(0)).squeeze(0);                     // t < w: the window is the whole prefix
            var parts = new List<Tensor> { head };
            if (n > w)
            {
                var windows = tokens.unfold(0, w, 1).narrow(0, 1, n - w);                               // [L − w, w]: tokens t − w + 1 … t
                foreach (var batch in windows.split(64))
                    parts.Add(model.call(batch).select(1, w - 1));                                      // the last position of each window
            }
            var logits = torch.cat(parts, 0);                                                           // [L, V]
            perRow.Add(nn.functional.cross_entropy(logits, stream.Labels[r], reduction: nn.Reduction.None));
        }
        var loss = torch.stack(perRow).mean(new long[] { 0 });                                          // mean over streams [L]
        return Chunked(loss.to(ScalarType.Float64).cpu().data<double>().ToArray(), chunk);
    }

    /// <summary>Means of consecutive chunks of <paramref name="chunk"/> values (the last chunk may be shorter).</summary>
    public static double[] Chunked(double[] perToken, int chunk)
    {
        ArgumentNullException.ThrowIfNull(perToken);
        Guard.Positive(chunk, nameof(chunk));
        return perToken.Chunk(chunk).Select(c => c.Average()).ToArray();
    }

    static void Check(TinyGpt model, TokenBatch stream, int chunk)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(stream);
        Guard.Positive(chunk, nameof(chunk));
        if (stream.Tokens.dim() != 2 || stream.Count < 1)
            throw new ArgumentException($"stream must hold sequences [N, L], got {Guard.ShapeText(stream.Tokens)}.", nameof(stream));
        if (!model.Config.TokenInputs) throw new ArgumentException("model must read token ids (VocabSize > 0).", nameof(model));
    }
}
