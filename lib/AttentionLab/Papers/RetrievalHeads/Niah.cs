using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RetrievalHeads;

/// <summary>A length × depth grid of NIAH prompts (the paper's detection and evaluation sweep, at toy size).</summary>
/// <param name="Haystacks">Filler lengths (the paper's context lengths).</param>
/// <param name="Depths">Needle depths as fractions (the paper's linspace(0, 100, 10) %).</param>
/// <param name="PerCell">Prompts per cell.</param>
public sealed record NiahGrid(int[] Haystacks, double[] Depths, int PerCell)
{
    /// <summary>The prompts of cell (i, j), drawn from <paramref name="seed"/> and the cell.</summary>
    public IReadOnlyList<NiahPrompt> Cell(NiahTask task, int i, int j, int seed)
    {
        ArgumentNullException.ThrowIfNull(task);
        var rng = new Random(seed * 7919 + i * 101 + j);
        return Enumerable.Range(0, PerCell).Select(_ => task.Prompt(Haystacks[i], Depths[j], rng)).ToList();
    }
}

/// <summary>NIAH evaluation: greedy decode, ROUGE-1 recall of the continuation against the needle's answer (the paper's score).</summary>
public static class Niah
{
    /// <summary>
    /// Greedy continuations [B, <paramref name="newTokens"/>] of equal-length prompts under <paramref name="hooks"/> (a head mask),
    /// recomputing the full forward at every step; no grad.
    /// </summary>
    public static long[][] Decode(TinyGpt model, IReadOnlyList<NiahPrompt> prompts, int newTokens,
        params (string Name, Func<Tensor, HookPoint, Tensor?> Fn)[] hooks)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompts);
        Guard.Positive(newTokens, nameof(newTokens));
        if (prompts.Count == 0) throw new ArgumentException("no prompts.", nameof(prompts));
        int t = prompts[0].Tokens.Length;
        if (prompts.Any(p => p.Tokens.Length != t)) throw new ArgumentException("the prompts of one batch must have equal length.", nameof(prompts));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var active = model.Hooks(hooks);
        var device = model.FinalNorm.Weight.device;
        var x = torch.tensor(prompts.SelectMany(p => p.Tokens).ToArray(), device: device).view(prompts.Count, t);
        var outs = new List<Tensor>();
        for (int step = 0; step < newTokens; step++)
        {
            var next = model.call(x).select(1, -1).argmax(-1, keepdim: true);    // greedy w = argmax p(· | x)
            outs.Add(next);
            x = torch.cat(new[] { x, next }, 1);
        }
        var flat = torch.cat(outs.ToArray(), 1).cpu().data<long>().ToArray();
        return Enumerable.Range(0, prompts.Count).Select(b => flat[(b * newTokens)..((b + 1) * newTokens)]).ToArray();
    }

    /// <summary>ROUGE-1 recall of <paramref name="generated"/> against <paramref name="answer"/> (token ids as words).</summary>
    public static double Recall(IReadOnlyList<long> generated, IReadOnlyList<long> answer) =>
        Metrics.Rouge1(generated.Select(t => t.ToString()).ToList(), answer.Select(t => t.ToString()).ToList()).Recall;

    /// <summary>Mean ROUGE-1 recall per cell [lengths, depths] under <paramref name="hooks"/>.</summary>
    public static double[,] Evaluate(TinyGpt model, NiahTask task, NiahGrid grid, int seed, params (string Name, Func<Tensor, HookPoint, Tensor?> Fn)[] hooks)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(grid);
        var score = new double[grid.Haystacks.Length, grid.Depths.Length];
        for (int i = 0; i < grid.Haystacks.Length; i++)
            for (int j = 0; j < grid.Depths.Length; j++)
            {
                var prompts = grid.Cell(task, i, j, seed);
                var outs = Decode(model, prompts, task.ValueLength, hooks);
                score[i, j] = prompts.Select((p, b) => Recall(outs[b], p.Answer)).Average();
            }
        return score;
    }
}
