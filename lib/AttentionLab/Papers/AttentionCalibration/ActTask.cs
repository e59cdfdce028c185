using AttentionLab.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionCalibration;

/// <summary>
/// The spec's synthetic in-context classification (§4a): BOS, then <see cref="Demos"/> demonstrations <c>x1 x2 x3 → y ;</c>, then the
/// query <c>x1 x2 x3 →</c>, whose next token is its label. An example's class is the majority class of its three content tokens
/// (the first half of the content vocabulary is class 0, the second half class 1); which label word names which class is drawn per
/// sequence — the usual naming with probability 1 − <see cref="FlipProbability"/>, swapped otherwise — so a model that ignores the
/// demonstrations is right 1 − p of the time at best, and only the demonstrations say which naming holds (the in-context part).
/// Every label position is scored in training; the query's
/// label position is the one evaluated. "→" and ";" are the frequent delimiters that may become mid-sequence sinks.
/// [ours: the spec names the format, not the rule; docs/decisions.md.]
/// </summary>
public sealed record ActTask(int Demos = 4, int Content = 16, double FlipProbability = 0.2)
{
    /// <summary>Token ids: BOS, "→", ";", the two label words.</summary>
    public const long Bos = 0, Arrow = 1, Semicolon = 2, LabelA = 3, LabelB = 4, FirstContent = 5;

    /// <summary>Vocabulary size.</summary>
    public int VocabSize => (int)FirstContent + Content;
    /// <summary>BOS + demos × 6 + the query's 4 tokens.</summary>
    public int Length => 1 + Demos * 6 + 4;

    /// <summary><paramref name="count"/> sequences from <c>new Random(seed)</c>: tokens [N, T]; labels on every "→" position (else ignored).</summary>
    public TokenBatch Generate(int count, int seed, Device? device = null)
    {
        if (count < 1) throw new ArgumentException($"count must be positive, got {count}.", nameof(count));
        var rng = new Random(seed);
        int t = Length;
        var tokens = new long[count * t];
        var labels = new long[count * t];
        Array.Fill(labels, TokenBatch.Ignore);
        for (int n = 0; n < count; n++)
        {
            int o = n * t, p = 0;
            bool flip = rng.NextDouble() < FlipProbability;                              // which label word names class 0
            tokens[o + p++] = Bos;
            for (int e = 0; e <= Demos; e++)
            {
                int votes = 0;
                for (int x = 0; x < 3; x++)
                {
                    int c = rng.Next(Content);
                    votes += c >= Content / 2 ? 1 : 0;
                    tokens[o + p++] = FirstContent + c;
                }
                int cls = votes >= 2 ? 1 : 0;                                             // majority class of x1 x2 x3
                long label = (cls == 1) ^ flip ? LabelB : LabelA;
                labels[o + p] = label;                                                    // the "→" position predicts y
                tokens[o + p++] = Arrow;
                if (e == Demos) break;
                tokens[o + p++] = label;
                tokens[o + p++] = Semicolon;
            }
        }
        return new TokenBatch(torch.tensor(tokens, new long[] { count, t }, device: device), torch.tensor(labels, new long[] { count, t }, device: device));
    }

    /// <summary>Accuracy of the query's label (last position), argmax over the two label words only, from logits [N, T, V].</summary>
    public static double QueryAccuracy(Tensor logits, TokenBatch batch)
    {
        using var scope = NewDisposeScope();
        var last = logits.select(1, -1).index_select(-1, torch.tensor(new[] { LabelA, LabelB }, device: logits.device));   // [N, 2]
        var predicted = last.argmax(-1) + LabelA;
        return predicted.eq(batch.Labels.select(1, -1)).to(ScalarType.Float64).mean().item<double>();
    }
}
