using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>A sampled continuation: the whole sequences and the model's log-probability of each new token.</summary>
/// <param name="Tokens">Prompt and continuation [B, T₀ + n] (int64).</param>
/// <param name="LogProbs">log p(x_t | x_&lt;t) of each new token under the model (temperature 1, no top-k) [B, n], no gradient.</param>
public sealed record SampledSequences(Tensor Tokens, Tensor LogProbs) : IDisposable
{
    public void Dispose() { Tokens.Dispose(); LogProbs.Dispose(); }
}

/// <summary>
/// Sampling decode for a token <see cref="TinyGpt"/> (for policy-gradient runs and generation demos): streamed with
/// <see cref="TinyGpt.Step"/> when every mixer can stream, else by re-running the forward pass on the growing sequence.
/// Draw x_t ~ softmax(logits_t / τ) restricted to the top k (τ = 0: argmax); <see cref="TokenLogProbs"/> recomputes the
/// log-probabilities with gradient in one forward pass, which is what a policy gradient differentiates.
/// </summary>
public static class Sampling
{
    /// <summary>Continues each prompt [B, T₀] by <paramref name="newTokens"/> tokens; no gradient.</summary>
    public static SampledSequences Generate(TinyGpt model, Tensor prompt, int newTokens, double temperature = 1, int? topK = null,
        Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!model.Config.TokenInputs) throw new ArgumentException("sampling needs a model with token inputs and outputs.", nameof(model));
        Guard.Rank(prompt, 2, nameof(prompt), "B, T₀ token ids");
        if (prompt.size(1) == 0) throw new ArgumentException("the prompt must hold at least one token.", nameof(prompt));
        Guard.Positive(newTokens, nameof(newTokens));
        if (!(temperature >= 0) || double.IsInfinity(temperature))
            throw new ArgumentException($"temperature must be finite and ≥ 0, got {temperature}.", nameof(temperature));
        if (topK is { } k && (k < 1 || k > model.Config.VocabSize))
            throw new ArgumentException($"topK must be in 1 … {model.Config.VocabSize}, got {k}.", nameof(topK));
        long total = prompt.size(1) + newTokens;
        if (model.Config.Positions is PositionKind.Learned && total > model.Config.MaxLength)
            throw new ArgumentException($"prompt + newTokens = {total} exceeds the model's MaxLength {model.Config.MaxLength} (learned positions).",
                nameof(newTokens));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        bool streams = model.Blocks.All(b => b.Mixer is IStreamingMixer { CanStream: true });
        var tokens = prompt;
        var logProbs = new List<Tensor>();
        TinyGptState? state = streams ? model.NewState(prompt.size(0)) : null;
        try
        {
            Tensor logits;                                                                               // [B, V] at the last prompt token
            if (streams)
            {
                logits = model.Step(prompt.select(1, 0), state!);                                        // a loop: every prompt token must enter
                for (long t = 1; t < prompt.size(1); t++) logits = model.Step(prompt.select(1, t), state!);
            }
            else logits = model.call(prompt).select(1, -1);
            for (int i = 0; i < newTokens; i++)
            {
                var next = Draw(logits, temperature, topK, generator);                                   // [B]
                logProbs.Add(logits.log_softmax(-1).gather(1, next.unsqueeze(1)).squeeze(1));
                tokens = torch.cat(new[] { tokens, next.unsqueeze(1) }, 1);
                if (i == newTokens - 1) break;
                logits = streams ? model.Step(next, state!) : model.call(tokens).select(1, -1);
            }
        }
        finally { state?.Dispose(); }
        return new SampledSequences(tokens.MoveToOuterDisposeScope(), torch.stack(logProbs, 1).MoveToOuterDisposeScope());
    }

    /// <summary>log p(x_t | x_&lt;t) for t = <paramref name="promptLength"/> … T − 1 of <paramref name="tokens"/> [B, T] → [B, T − promptLength], with
    /// gradient.</summary>
    public static Tensor TokenLogProbs(TinyGpt model, Tensor tokens, int promptLength)
    {
        ArgumentNullException.ThrowIfNull(model);
        Guard.Rank(tokens, 2, nameof(tokens), "B, T token ids");
        if (promptLength < 1 || promptLength >= tokens.size(1))
            throw new ArgumentOutOfRangeException(nameof(promptLength), promptLength, $"promptLength must be in 1 … {tokens.size(1) - 1}.");
        using var scope = NewDisposeScope();
        long n = tokens.size(1) - promptLength;
        var logits = model.call(tokens).narrow(1, promptLength - 1, n);                                // predicts positions promptLength …
        var targets = tokens.narrow(1, promptLength, n);
        return logits.log_softmax(-1).gather(2, targets.unsqueeze(2)).squeeze(2).MoveToOuterDisposeScope();
    }

    static Tensor Draw(Tensor logits, double temperature, int? topK, Generator? generator)
    {
        if (temperature == 0) return logits.argmax(-1);
        var scaled = logits / temperature;
        if (topK is { } k && k < scaled.size(-1))
        {
            var kth = scaled.topk(k, dim: -1).values.narrow(-1, k - 1, 1);                            // the k-th largest per row
            scaled = scaled.masked_fill(scaled < kth, double.NegativeInfinity);
        }
        return torch.multinomial(scaled.softmax(-1), 1, generator: generator).squeeze(1);
    }
}
