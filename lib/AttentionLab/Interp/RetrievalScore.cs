using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Interp;

/// <summary>One detection run: the per-head retrieval scores [L, H] of this run, the greedy continuation and its ROUGE-1 recall.</summary>
/// <param name="Scores">score_{l,h} of this run [L, H] (Σ over decode steps of 1/(e − s) when the head's top-1 key is a needle
/// token equal to the emitted one).</param>
/// <param name="Generated">The greedy tokens.</param>
/// <param name="AnswerRecall">ROUGE-1 recall of <see cref="Generated"/> against the needle's answer.</param>
public sealed record RetrievalRun(double[,] Scores, IReadOnlyList<long> Generated, double AnswerRecall)
{
    /// <summary>The official code adds a run's scores only when the answer was retrieved: ROUGE-1 recall &gt; 0.5.</summary>
    public bool Counts => AnswerRecall > 0.5;
}

/// <summary>
/// The retrieval score of Wu et al. 2024 (official code: nightdessert/Retrieval_Head, <c>retrieval_calculate</c>), on any
/// token <see cref="TinyGpt"/>: greedy decode; at each step with emitted token w and each head's attention row a of the
/// last position, j* = argmax_j a_j; when s ≤ j* &lt; e and x_{j*} = w, score += 1/(e − s). Final scores average the runs
/// that retrieved the answer (<see cref="RetrievalRun.Counts"/>); a retrieval head scores &gt; 0.1.
/// </summary>
/// <remarks>The attention row is read from <c>hook_pattern</c> of a forward pass over the sequence so far (the paper's eager
/// decode step reads the same row from its cache); ties in argmax go to the first key, as torch's.</remarks>
public static class RetrievalScore
{
    /// <summary>The paper's threshold for a retrieval head.</summary>
    public const double Threshold = 0.1;

    /// <summary>
    /// Adds one decode step to <paramref name="scores"/> [L, H]: <paramref name="lastRows"/> holds per layer the last query's
    /// pattern row [H, S]; <paramref name="generated"/> is the emitted token, <paramref name="context"/> the S token ids the
    /// row attends over, the needle the span [<paramref name="needleStart"/>, <paramref name="needleEnd"/>).
    /// </summary>
    public static void AddStep(IReadOnlyList<Tensor> lastRows, long generated, IReadOnlyList<long> context, int needleStart, int needleEnd,
        double[,] scores)
    {
        ArgumentNullException.ThrowIfNull(lastRows);
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(scores);
        if (needleStart < 0 || needleEnd <= needleStart || needleEnd > context.Count)
            throw new ArgumentException($"the needle [{needleStart}, {needleEnd}) must be a non-empty span of the {context.Count} context tokens.",
                nameof(needleStart));
        if (scores.GetLength(0) != lastRows.Count)
            throw new ArgumentException($"scores has {scores.GetLength(0)} layers, lastRows {lastRows.Count}.", nameof(scores));
        for (int l = 0; l < lastRows.Count; l++)
        {
            var row = lastRows[l];
            if (row.dim() != 2 || row.size(1) != context.Count || row.size(0) != scores.GetLength(1))
                throw new ArgumentException($"lastRows[{l}] must be [{scores.GetLength(1)}, {context.Count}], got {Guard.ShapeText(row)}.", nameof(lastRows));
            var top = row.argmax(-1).to(ScalarType.Int64).cpu().data<long>().ToArray();     // j* per head
            for (int h = 0; h < top.Length; h++)
                if (top[h] >= needleStart && top[h] < needleEnd && context[(int)top[h]] == generated)
                    scores[l, h] += 1.0 / (needleEnd - needleStart);
        }
    }

    /// <summary>
    /// One detection run: greedy decode of up to <paramref name="maxNewTokens"/> tokens after <paramref name="prompt"/> (a
    /// single sequence of ids), scoring every head at every step, and the ROUGE-1 recall of the continuation against
    /// <paramref name="answer"/>. Extra hooks (a head mask) apply to the decode.
    /// </summary>
    public static RetrievalRun Detect(TinyGpt model, IReadOnlyList<long> prompt, int needleStart, int needleEnd, IReadOnlyList<long> answer,
        int maxNewTokens, params (string Name, Func<Tensor, HookPoint, Tensor?> Fn)[] hooks)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(answer);
        if (prompt.Count == 0) throw new ArgumentException("the prompt is empty.", nameof(prompt));
        if (answer.Count == 0) throw new ArgumentException("the answer is empty.", nameof(answer));
        Guard.Positive(maxNewTokens, nameof(maxNewTokens));
        if (needleStart < 0 || needleEnd <= needleStart || needleEnd > prompt.Count)
            throw new ArgumentException($"the needle [{needleStart}, {needleEnd}) must be a non-empty span of the {prompt.Count} prompt tokens.",
                nameof(needleStart));
        var device = model.FinalNorm.Weight.device;
        var scores = new double[model.LayerCount, model.HeadCount];
        var tokens = prompt.ToList();
        var generated = new List<long>();
        var patternNames = Enumerable.Range(0, model.LayerCount).Select(l => ActName.Get("pattern", l)).ToArray();
        using var noGrad = torch.no_grad();
        using var extra = model.Hooks(hooks);
        for (int step = 0; step < maxNewTokens; step++)
        {
            using var scope = NewDisposeScope();
            using var input = torch.tensor(tokens.ToArray(), device: device).unsqueeze(0);
            var (logits, cache) = model.RunWithCache(input, patternNames.Contains);
            using (cache)
            {
                long w = logits[0, -1].argmax().item<long>();
                var rows = Enumerable.Range(0, model.LayerCount).Select(l => cache["pattern", l][0].select(1, -1)).ToList();   // [H, S]
                AddStep(rows, w, tokens, needleStart, needleEnd, scores);
                generated.Add(w);
                tokens.Add(w);
            }
        }
        double recall = Metrics.Rouge1(generated.Select(t => t.ToString()).ToList(), answer.Select(t => t.ToString()).ToList()).Recall;
        return new RetrievalRun(scores, generated, recall);
    }

    /// <summary>Mean scores [L, H] over the runs that count; NaN everywhere when none does.</summary>
    public static double[,] Average(IReadOnlyList<RetrievalRun> runs, int layers, int heads)
    {
        ArgumentNullException.ThrowIfNull(runs);
        var counted = runs.Where(r => r.Counts).ToList();
        var mean = new double[layers, heads];
        for (int l = 0; l < layers; l++)
            for (int h = 0; h < heads; h++)
                mean[l, h] = counted.Count == 0 ? double.NaN : counted.Average(r => r.Scores[l, h]);
        return mean;
    }
}
