using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// The naive twin of <see cref="MixtureOfExperts"/> and <see cref="ExpertRouter.Select"/>: gates chosen token by token in a
/// plain loop, and every expert run on every token, weighted by its (mostly zero) gate. Slow and obviously correct.
/// </summary>
public static class MixtureOfExpertsNaive
{
    /// <summary>
    /// Dense gates [N, E] from logits [N, E]: p = softmax(logits); per token the k experts with the largest p (ties: the
    /// lower index) are kept, the rest set to 0; renormalised: g = p·m / Σ p·m; soft: g = p.
    /// </summary>
    public static Tensor Gates(Tensor logits, int topK, RouterMode mode = RouterMode.TopK, bool renormalise = true)
    {
        Guard.Rank(logits, 2, nameof(logits), "N tokens, E experts");
        long n = logits.shape[0], e = logits.shape[1];
        if (mode == RouterMode.TopK && (topK < 1 || topK > e)) throw new ArgumentException($"topK must be in 1 … {e}, got {topK}.", nameof(topK));
        using var scope = NewDisposeScope();
        var p = torch.softmax(logits, -1);
        if (mode == RouterMode.Soft) return p.MoveToOuterDisposeScope();
        var values = p.detach().to(ScalarType.Float64).cpu().data<double>().ToArray();
        var mask = new double[n * e];
        for (long t = 0; t < n; t++)
        {
            var order = Enumerable.Range(0, (int)e).OrderByDescending(i => values[t * e + i]).ThenBy(i => i).Take(topK);
            foreach (var i in order) mask[t * e + i] = 1;                               // m_{t,i} = 1[i among the k largest]
        }
        var m = torch.tensor(mask, new[] { n, e }, dtype: p.dtype, device: p.device);
        var kept = p * m;
        return (renormalise ? kept / kept.sum(-1, keepdim: true) : kept).MoveToOuterDisposeScope();
    }

    /// <summary>y = Σ_i g[:, i] · expert(i, x) over every expert and every token: x [N, d], gates [N, E].</summary>
    public static Tensor Forward(Tensor x, Tensor gates, Func<int, Tensor, Tensor> expert)
    {
        Guard.Rank(x, 2, nameof(x), "N tokens, d");
        Guard.Rank(gates, 2, nameof(gates), "N tokens, E experts");
        ArgumentNullException.ThrowIfNull(expert);
        using var scope = NewDisposeScope();
        Tensor? y = null;
        for (int i = 0; i < gates.shape[1]; i++)
        {
            var term = gates.narrow(1, i, 1) * expert(i, x);                           // g_{·,i} FFN_i(x)
            y = y is null ? term : y + term;
        }
        return y!.MoveToOuterDisposeScope();
    }

    /// <summary>L = E · Σ_i (1/N Σ_t m_{t,i}) (1/N Σ_t p_{t,i}), one expert at a time.</summary>
    public static Tensor LoadBalance(Tensor probabilities, Tensor mask)
    {
        Guard.Rank(probabilities, 2, nameof(probabilities), "N tokens, E experts");
        using var scope = NewDisposeScope();
        long n = probabilities.shape[0], e = probabilities.shape[1];
        Tensor total = torch.zeros(1, dtype: probabilities.dtype, device: probabilities.device).squeeze();
        for (int i = 0; i < e; i++)
        {
            double f = mask.select(1, i).to(ScalarType.Float64).sum().item<double>() / n;     // f_i
            total = total + probabilities.select(1, i).sum() / n * f;                         // f_i P_i
        }
        return (total * e).MoveToOuterDisposeScope();
    }
}
