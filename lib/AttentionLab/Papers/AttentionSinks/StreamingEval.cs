using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionSinks;

/// <summary>
/// StreamingLLM's evaluation (Xiao et al. 2024): stream a long text through a model token by token and report the
/// next-token loss per chunk, under a KV policy (dense cache, window only, sink + window) or the sliding window with
/// re-computation (every token re-reads the last w tokens from scratch: exact but w× the work).
/// </summary>
public static class StreamingEval
{
    /// <summary>
    /// Mean next-token loss (nats) per chunk of <paramref name="chunk"/> positions of stream [1, N], decoding one token at a
    /// time; <paramref name="kvPolicy"/> null keeps every key (the dense cache).
    /// </summary>
    public static double[] PolicyLoss(TinyGpt model, TokenBatch stream, int chunk, Func<int, IKvPolicy>? kvPolicy = null)
    {
        Check(model, stream, chunk);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        model.eval();
        long n = stream.Length;
        using var state = model.NewState(1, kvPolicy);
        var losses = new List<Tensor>();
        for (long t = 0; t < n; t++)
        {
            using var stepScope = NewDisposeScope();
            var logits = model.Step(stream.Tokens.select(1, t), state);                              // [1, V]
            losses.Add(nn.functional.cross_entropy(logits, stream.Labels.select(1, t)).MoveToOuterDisposeScope());
        }
        return Chunked(torch.stack(losses), chunk);
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
        var head = model.call(stream.Tokens.narrow(1, 0, w)).squeeze(0);                              // t < w: the window is the whole prefix
        var parts = new List<Tensor> { head };
        if (n > w)
        {
            var windows = stream.Tokens.squeeze(0).unfold(0, w, 1).narrow(0, 1, n - w);                  // [N − w, w]: tokens t − w + 1 … t
            foreach (var batch in windows.split(64))
                parts.Add(model.call(batch).select(1, w - 1));                                           // the last position of each window
        }
        var logits = torch.cat(parts, 0);                                                                 // [N, V]
        var loss = nn.functional.cross_entropy(logits, stream.Labels.squeeze(0), reduction: nn.Reduction.None);
        return Chunked(loss, chunk);
    }

    static double[] Chunked(Tensor perToken, int chunk)
    {
        var values = perToken.to(ScalarType.Float64).cpu().data<double>().ToArray();
        return values.Chunk(chunk).Select(c => c.Average()).ToArray();
    }

    static void Check(TinyGpt model, TokenBatch stream, int chunk)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(stream);
        Guard.Positive(chunk, nameof(chunk));
        if (stream.Count != 1) throw new ArgumentException($"stream must hold one sequence [1, N], got {stream.Count}.", nameof(stream));
        if (!model.Config.TokenInputs) throw new ArgumentException("model must read token ids (VocabSize > 0).", nameof(model));
    }
}
