using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// Upcycling dense FFNs into a <see cref="MixtureOfExperts"/>: sparse upcycling (Komatsuzaki et al. 2022, arXiv 2212.05055)
/// copies one dense FFN into every expert; BTX (Sukhbaatar et al. 2024) and BAM (Zhang et al. 2024) take the FFN of each
/// of N branched models as one expert. The router starts random (Linear's default init) or at zero.
/// </summary>
/// <remarks>
/// Identical experts: y_t = Σ_{i∈S_t} g_{t,i} FFN(x_t) = FFN(x_t) · Σ_{i∈S_t} g_{t,i} = FFN(x_t) whenever the gates sum to 1
/// (renormalised top-k or soft), for any router — so the upcycled layer equals the dense one before training. With raw
/// top-k gates (Switch) the output is scaled by Σ_{i∈S_t} p_{t,i} &lt; 1 and does not.
/// </remarks>
public static class Upcycling
{
    /// <summary>E copies of <paramref name="dense"/> behind a fresh router (same dtype and device as the dense FFN).</summary>
    public static MixtureOfExperts FromDense(TinyMlp dense, int experts, int topK, RouterMode mode = RouterMode.TopK, bool renormalise = true,
        bool zeroRouter = false)
    {
        ArgumentNullException.ThrowIfNull(dense);
        Guard.Positive(experts, nameof(experts));
        return FromExperts(Enumerable.Repeat(dense, experts).ToList(), topK, mode, renormalise, zeroRouter);
    }

    /// <summary>One expert per given FFN (copied, so the sources stay untouched) behind a fresh router.</summary>
    public static MixtureOfExperts FromExperts(IReadOnlyList<TinyMlp> ffns, int topK, RouterMode mode = RouterMode.TopK, bool renormalise = true,
        bool zeroRouter = false)
    {
        ArgumentNullException.ThrowIfNull(ffns);
        if (ffns.Count == 0) throw new ArgumentException("give at least one FFN.", nameof(ffns));
        var w = ffns[0].In.weight!;
        long d = w.shape[1], hidden = w.shape[0];
        for (int i = 1; i < ffns.Count; i++)
            if (!ffns[i].In.weight!.shape.SequenceEqual(w.shape))
                throw new ArgumentException($"FFN {i} has W_in {Guard.ShapeText(ffns[i].In.weight!)}, FFN 0 has {Guard.ShapeText(w)}.", nameof(ffns));
        var router = new ExpertRouter((int)d, ffns.Count, topK, mode, renormalise, zeroRouter);
        router.to(w.device).to(w.dtype);
        return new MixtureOfExperts(ffns.Select(Copy).ToList(), router);
    }

    /// <summary>A fresh <see cref="TinyMlp"/> holding a copy of <paramref name="source"/>'s weights (same dtype and device).</summary>
    public static TinyMlp Copy(TinyMlp source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var w = source.In.weight!;
        var copy = new TinyMlp((int)w.shape[1], (int)w.shape[0]);
        copy.to(w.device).to(w.dtype);
        using (torch.no_grad())
            foreach (var ((_, to), (_, from)) in copy.named_parameters().Zip(source.named_parameters()))
                to.copy_(from);
        return copy;
    }
}

/// <summary>
/// Parameter averaging: θ = Σ_m w_m θ_m / Σ_m w_m over models that share parameter names (model soups, Wortsman et al.
/// 2022; BTX and BAM merge the non-expert parameters — embeddings, norms, attention in BTX, LM head — of their branched
/// models this way). Meaningful for models branched from one seed (one linear-mode basin); nothing here checks that.
/// </summary>
public static class ParameterAveraging
{
    /// <summary>
    /// The weighted mean of every parameter named in all of <paramref name="models"/> (and accepted by
    /// <paramref name="include"/>), keyed by name; detached tensors in the caller's dispose scope.
    /// </summary>
    public static IReadOnlyDictionary<string, Tensor> Average(IReadOnlyList<nn.Module> models, IReadOnlyList<double>? weights = null,
        Func<string, bool>? include = null)
    {
        ArgumentNullException.ThrowIfNull(models);
        if (models.Count == 0) throw new ArgumentException("give at least one model.", nameof(models));
        var w = Normalised(weights, models.Count);
        var tables = models.Select(m => m.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter)).ToList();
        var result = new Dictionary<string, Tensor>();
        foreach (var name in tables[0].Keys)
        {
            if (!tables.All(t => t.ContainsKey(name)) || !(include?.Invoke(name) ?? true)) continue;
            result[name] = Mean(name, tables.Select(t => t[name]).ToList(), w);
        }
        return result;
    }

    /// <summary>
    /// Writes the weighted mean of <paramref name="sources"/>' parameters into each parameter of <paramref name="target"/>
    /// whose name every source has (and <paramref name="include"/> accepts); the others stay as they are (e.g. BTX's
    /// experts). Returns the names written.
    /// </summary>
    public static IReadOnlyList<string> AverageInto(nn.Module target, IReadOnlyList<nn.Module> sources, IReadOnlyList<double>? weights = null,
        Func<string, bool>? include = null)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(sources);
        if (sources.Count == 0) throw new ArgumentException("give at least one source model.", nameof(sources));
        var w = Normalised(weights, sources.Count);
        var tables = sources.Select(m => m.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter)).ToList();
        var written = new List<string>();
        using var scope = NewDisposeScope();
        foreach (var (name, p) in target.named_parameters())
        {
            if (!tables.All(t => t.ContainsKey(name)) || !(include?.Invoke(name) ?? true)) continue;
            var mean = Mean(name, tables.Select(t => t[name]).ToList(), w);
            if (!mean.shape.SequenceEqual(p.shape))
                throw new ArgumentException($"parameter {name}: the sources' {Guard.ShapeText(mean)} does not fit the target's {Guard.ShapeText(p)}.",
                    nameof(target));
            using (torch.no_grad()) p.copy_(mean);
            written.Add(name);
        }
        return written;
    }

    static double[] Normalised(IReadOnlyList<double>? weights, int count)
    {
        if (weights is null) return Enumerable.Repeat(1.0 / count, count).ToArray();
        if (weights.Count != count) throw new ArgumentException($"{weights.Count} weights for {count} models.", nameof(weights));
        if (weights.Any(x => !(x >= 0) || double.IsInfinity(x)))
            throw new ArgumentException($"weights must be finite and ≥ 0: [{string.Join(", ", weights)}].", nameof(weights));
        double sum = weights.Sum();
        if (!(sum > 0)) throw new ArgumentException("weights must not all be 0.", nameof(weights));
        return weights.Select(x => x / sum).ToArray();
    }

    static Tensor Mean(string name, IReadOnlyList<Tensor> values, double[] w)
    {
        using var scope = NewDisposeScope();
        var first = values[0];
        Tensor sum = torch.zeros_like(first, dtype: ScalarType.Float64);
        for (int m = 0; m < values.Count; m++)
        {
            if (!values[m].shape.SequenceEqual(first.shape))
                throw new ArgumentException($"parameter {name}: model {m} has {Guard.ShapeText(values[m])}, model 0 has {Guard.ShapeText(first)}.", "models");
            if (w[m] != 0) sum = sum + values[m].detach().to(ScalarType.Float64, first.device) * w[m];   // Σ_m w_m θ_m (w normalised)
        }
        return sum.to(first.dtype).MoveToOuterDisposeScope();
    }
}
