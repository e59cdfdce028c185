using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Dha;

/// <summary>Which projection a head grouping acts on: keys or values (DHA groups them independently).</summary>
public enum HeadKind { Key, Value }

/// <summary>
/// DHA's search result: per layer ℓ a partition P_K^ℓ of the H key heads and an independent partition P_V^ℓ of the value heads
/// (group ids 0 … g−1, numbered by first appearance), chosen so that Σ_ℓ (g_K^ℓ + g_V^ℓ) = <see cref="Target"/> = round(ρ · 2LH).
/// </summary>
/// <param name="Ratio">ρ, the share of MHA's cached heads kept.</param>
/// <param name="Target">The budget in cached heads, round(ρ · 2LH).</param>
/// <param name="KeyGroups">[L][H]: the key group of each head, per layer.</param>
/// <param name="ValueGroups">[L][H]: the value group of each head, per layer.</param>
/// <param name="Cost">Σ over every partition of Σ_G Σ_{h∈G} ‖W_h − W̄_G‖² at the end of the search (the fusion cost).</param>
public sealed record DhaPlan(double Ratio, int Target, IReadOnlyList<int[]> KeyGroups, IReadOnlyList<int[]> ValueGroups, double Cost)
{
    /// <summary>L.</summary>
    public int Layers => KeyGroups.Count;
    /// <summary>g_K^ℓ per layer.</summary>
    public int[] KeyCounts => KeyGroups.Select(g => g.Max() + 1).ToArray();
    /// <summary>g_V^ℓ per layer.</summary>
    public int[] ValueCounts => ValueGroups.Select(g => g.Max() + 1).ToArray();
    /// <summary>Σ_ℓ (g_K^ℓ + g_V^ℓ): the cached heads of the converted model.</summary>
    public int TotalGroups => KeyCounts.Sum() + ValueCounts.Sum();
    /// <summary>The groups of one kind in layer ℓ.</summary>
    public int[] Groups(int layer, HeadKind kind) => kind == HeadKind.Key ? KeyGroups[layer] : ValueGroups[layer];

    /// <summary>Every head its own group in K and V (ρ = 1): the identity grouping.</summary>
    public static DhaPlan Identity(int layers, int heads) =>
        new(1, 2 * layers * heads, Enumerable.Range(0, layers).Select(_ => Enumerable.Range(0, heads).ToArray()).ToList(),
            Enumerable.Range(0, layers).Select(_ => Enumerable.Range(0, heads).ToArray()).ToList(), 0);

    /// <summary>GQA's grouping as a plan: G contiguous groups in K and V in every layer (G = ρ·H).</summary>
    public static DhaPlan Contiguous(int layers, int heads, int groups)
    {
        var map = KvHeadMap.MeanPool(heads, groups).SlotOfHead.ToArray();
        return new((double)groups / heads, 2 * layers * groups, Enumerable.Range(0, layers).Select(_ => (int[])map.Clone()).ToList(),
            Enumerable.Range(0, layers).Select(_ => (int[])map.Clone()).ToList(), double.NaN);
    }
}

/// <summary>Head similarity per layer (cf. DHA Fig. 2): cosine of the flattened per-head projection weights and biases.</summary>
public static class HeadSimilarity
{
    /// <summary>
    /// cos(w_i, w_j) for the flattened [W_K^h ; b_K^h] (or V) of every layer: [L, H, H] float64 on the CPU.
    /// </summary>
    public static Tensor Compute(TinyGpt model, HeadKind kind)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var scope = NewDisposeScope();
        var rows = Enumerable.Range(0, model.Config.Layers).Select(l =>
        {
            var w = DhaConverter.HeadVectors(DhaConverter.Mixer(model, l), kind);      // [H, P]
            var unit = w / w.norm(1, keepdim: true).clamp_min(1e-30);
            return unit.matmul(unit.t());                                               // cos_ij = ŵ_i · ŵ_j
        }).ToArray();
        return torch.stack(rows).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// DHA's conversion of an MHA <see cref="TinyGpt"/> (Chen et al. 2024, arXiv 2406.06567): the search (per-layer, independent
/// K and V grouping by fusion cost until the budget is met), the fusion stage (ω trained on LM loss + λ·L_fuse, λ rising like
/// a Lagrange multiplier), the collapse to one cached head per group, and GQA's mean-pool conversion as the baseline. The
/// converted layers are <see cref="GroupedKvAttention"/> with <see cref="KvHeadMap"/>s (gather index maps, non-contiguous groups).
/// </summary>
/// <remarks>
/// Search [ours, spec §2]: every partition starts with singletons; repeatedly merge, across all layers and both kinds, the pair of
/// groups (A, B) whose merge grows Σ_G Σ_{h∈G} ‖w_h − w̄_G‖² least — Ward's growth |A||B| / (|A| + |B|) · ‖w̄_A − w̄_B‖² — until
/// Σ_ℓ (g_K^ℓ + g_V^ℓ) = round(ρ · 2LH). w_h = [W_K^h ; b_K^h] flattened (float64), divided by the partition's RMS head norm
/// √(mean_h ‖w_h‖²) [ours: the raw cost lets the partition with the smallest weights give up all its heads]. Redundant layers give up more heads.
/// Fusion: head i's fused weights W̃_i = Σ_{j∈G(i)} ω_ij W_j (ω = I at the start: the MHA exactly);
/// L_fuse = Σ_G Σ_{i∈G} ‖W̃_i − mean_{j∈G} W̃_j‖² over K and V of every layer (weights and biases);
/// loss = LM + λ · L_fuse / L_fuse(ω = I);  λ ← λ + μ · L_fuse / L_fuse(ω = I) after each step.
/// Collapse: cached head of group G = mean_{i∈G} W̃_i, i.e. F[G, ·] = mean_{i∈G} ω[i, ·] (<see cref="KvHeadMap.Collapse"/>).
/// KV bytes per token = Σ_ℓ (g_K^ℓ + g_V^ℓ) · d_h · bytes per element.
/// </remarks>
public static class DhaConverter
{
    /// <summary>Layer <paramref name="layer"/>'s mixer as an <see cref="AttentionMixer"/> (MHA or grouped).</summary>
    internal static AttentionMixer Mixer(TinyGpt model, int layer) => model.Blocks[layer].Mixer as AttentionMixer
        ?? throw new ArgumentException($"block {layer} has a {model.Blocks[layer].Mixer.GetType().Name}, not an attention mixer.", nameof(model));

    /// <summary>w_h = [W^h flattened ; b^h] per head of one kind: [H, d·D + D] float64 (detached, CPU).</summary>
    public static Tensor HeadVectors(AttentionMixer mixer, HeadKind kind)
    {
        ArgumentNullException.ThrowIfNull(mixer);
        using var scope = NewDisposeScope();
        var w = (kind == HeadKind.Key ? mixer.W_K : mixer.W_V).detach().to(ScalarType.Float64).cpu();   // [H, d, D]
        var flat = w.reshape(mixer.Heads, -1);
        var bias = HeadBias(mixer, kind);
        if (bias is not null) flat = torch.cat(new[] { flat, bias.detach().to(ScalarType.Float64).cpu() }, 1);
        return flat.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// What the search compares: w_h / r with r² = mean_h ‖w_h‖² of this layer and kind [ours], so the cost of a merge is
    /// relative to the partition's own scale and K, V and layers compete on equal terms for the budget: [H, P] float64.
    /// </summary>
    public static Tensor SearchVectors(AttentionMixer mixer, HeadKind kind)
    {
        using var scope = NewDisposeScope();
        var w = HeadVectors(mixer, kind);
        var r = w.pow(2).sum(1).mean().sqrt().clamp_min(1e-30);                            // r = √(mean_h ‖w_h‖²)
        return (w / r).MoveToOuterDisposeScope();
    }

    /// <summary>b^h [H, D] of one kind (a view of W_QKV's bias), or null when the projection has no bias.</summary>
    internal static Tensor? HeadBias(AttentionMixer mixer, HeadKind kind)
    {
        if (mixer.Qkv.bias is not { } b) return null;
        int dim = kind == HeadKind.Key ? mixer.KeyDim : mixer.ValueDim;
        long first = (mixer.ProjectsQuery ? mixer.Heads * (long)mixer.KeyDim : 0) + (kind == HeadKind.Key ? 0 : mixer.Heads * (long)mixer.KeyDim);
        return b.narrow(0, first, mixer.Heads * (long)dim).view(mixer.Heads, dim);
    }

    /// <summary>The budget in cached heads, round(ρ · 2LH); ArgumentException when it is below one group per partition.</summary>
    public static int Target(int layers, int heads, double ratio)
    {
        if (!(ratio > 0 && ratio <= 1)) throw new ArgumentException($"ratio must lie in (0, 1], got {ratio}.", nameof(ratio));
        int target = (int)Math.Round(ratio * 2 * layers * heads);
        if (target < 2 * layers)
            throw new ArgumentException($"ratio {ratio} keeps {target} cached heads, " +
                $"fewer than one K and one V group per layer ({2 * layers}).", nameof(ratio));
        return target;
    }

    /// <summary>
    /// The search: greedy merges by Ward's growth of the fusion cost across every layer's K and V partitions until the
    /// budget round(ρ · 2LH) is met (see the class remarks). Ties go to the lower layer, K before V, the lower pair.
    /// </summary>
    public static DhaPlan Search(TinyGpt model, double ratio)
    {
        ArgumentNullException.ThrowIfNull(model);
        int layers = model.Config.Layers, heads = model.Config.Heads;
        int target = Target(layers, heads, ratio);
        var parts = new List<Partition>();
        for (int l = 0; l < layers; l++)
            foreach (var kind in new[] { HeadKind.Key, HeadKind.Value })
            {
                using var w = SearchVectors(Mixer(model, l), kind);
                parts.Add(new Partition(Rows(w)));
            }
        int total = parts.Sum(p => p.Count);
        while (total > target)
        {
            (int part, int a, int b, double cost) best = (-1, -1, -1, double.PositiveInfinity);
            for (int p = 0; p < parts.Count; p++)
                for (int a = 0; a < parts[p].Count; a++)
                    for (int b = a + 1; b < parts[p].Count; b++)
                    {
                        double c = parts[p].WardCost(a, b);
                        if (c < best.cost) best = (p, a, b, c);
                    }
            if (best.part < 0) throw new InvalidOperationException("no pair left to merge (a cost is NaN?).");
            parts[best.part].Merge(best.a, best.b);
            total--;
        }
        return new DhaPlan(ratio, target, parts.Where((_, i) => i % 2 == 0).Select(p => p.GroupOfHead()).ToList(),
            parts.Where((_, i) => i % 2 == 1).Select(p => p.GroupOfHead()).ToList(), parts.Sum(p => p.Sse()));
    }

    static double[][] Rows(Tensor w)
    {
        long h = w.shape[0], n = w.shape[1];
        var data = w.contiguous().data<double>().ToArray();
        return Enumerable.Range(0, (int)h).Select(i => data.AsSpan((int)(i * n), (int)n).ToArray()).ToArray();
    }

    /// <summary>One partition during the search: clusters with their member heads, sum vector and size.</summary>
    sealed class Partition
    {
        readonly double[][] vectors;
        readonly List<(List<int> Members, double[] Sum)> clusters;

        public Partition(double[][] vectors)
        {
            this.vectors = vectors;
            clusters = vectors.Select((v, i) => (new List<int> { i }, (double[])v.Clone())).ToList();
        }

        public int Count => clusters.Count;

        /// <summary>Ward: SSE(A ∪ B) − SSE(A) − SSE(B) = |A||B| / (|A| + |B|) · ‖w̄_A − w̄_B‖².</summary>
        public double WardCost(int a, int b)
        {
            var (ma, sa) = clusters[a];
            var (mb, sb) = clusters[b];
            double na = ma.Count, nb = mb.Count, d2 = 0;
            for (int i = 0; i < sa.Length; i++) { double d = sa[i] / na - sb[i] / nb; d2 += d * d; }
            return na * nb / (na + nb) * d2;
        }

        public void Merge(int a, int b)
        {
            var (ma, sa) = clusters[a];
            var (mb, sb) = clusters[b];
            ma.AddRange(mb);
            for (int i = 0; i < sa.Length; i++) sa[i] += sb[i];
            clusters.RemoveAt(b);                                                       // b > a: a's index stays
        }

        public double Sse() => clusters.Sum(c => c.Members.Sum(h =>
        {
            double s = 0;
            for (int i = 0; i < c.Sum.Length; i++) { double d = vectors[h][i] - c.Sum[i] / c.Members.Count; s += d * d; }
            return s;
        }));

        public int[] GroupOfHead() => Canonical(Enumerable.Range(0, vectors.Length)
            .Select(h => clusters.FindIndex(c => c.Members.Contains(h))).ToArray());
    }

    /// <summary>Group ids renumbered 0 … g−1 by first appearance over heads 0 … H−1.</summary>
    public static int[] Canonical(IReadOnlyList<int> groups)
    {
        ArgumentNullException.ThrowIfNull(groups);
        var map = new Dictionary<int, int>();
        return groups.Select(g => map.TryGetValue(g, out int id) ? id : map[g] = map.Count).ToArray();
    }

    /// <summary>
    /// The fusion stage's model: a copy of the MHA <paramref name="mha"/> whose layers are <see cref="GroupedKvAttention"/> with
    /// DHA's decoupled maps (S = H, ω = I, trainable inside each group of <paramref name="plan"/>): it equals the MHA exactly.
    /// </summary>
    public static TinyGpt Decouple(TinyGpt mha, DhaPlan plan)
    {
        ArgumentNullException.ThrowIfNull(mha);
        CheckPlan(mha, plan);
        return GroupedKvAttention.Convert(mha, l => (KvHeadMap.Decoupled(plan.KeyGroups[l]), KvHeadMap.Decoupled(plan.ValueGroups[l])), trainableFusion: true);
    }

    /// <summary>GQA's conversion: <paramref name="groups"/> contiguous mean-pooled groups for K and V in every layer.</summary>
    public static TinyGpt GqaMeanPool(TinyGpt mha, int groups)
    {
        ArgumentNullException.ThrowIfNull(mha);
        int heads = mha.Config.Heads;
        return GroupedKvAttention.Convert(mha, _ => (KvHeadMap.MeanPool(heads, groups), KvHeadMap.MeanPool(heads, groups)));
    }

    static void CheckPlan(TinyGpt model, DhaPlan plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        if (plan.Layers != model.Config.Layers || plan.KeyGroups.Concat(plan.ValueGroups).Any(g => g.Length != model.Config.Heads))
            throw new ArgumentException($"the plan covers {plan.Layers} layers × {plan.KeyGroups.FirstOrDefault()?.Length} heads, " +
                $"the model has {model.Config.Layers} × {model.Config.Heads}.", nameof(plan));
    }

    /// <summary>
    /// L_fuse of a decoupled model (see the class remarks): Σ over layers and K/V of Σ_G Σ_{i∈G} ‖W̃_i − mean_{j∈G} W̃_j‖²,
    /// W̃ including the fused biases; differentiable in ω (a scalar in the caller's scope).
    /// </summary>
    public static Tensor FusionLoss(TinyGpt decoupled, DhaPlan plan)
    {
        ArgumentNullException.ThrowIfNull(decoupled);
        CheckPlan(decoupled, plan);
        using var scope = NewDisposeScope();
        Tensor? total = null;
        for (int l = 0; l < plan.Layers; l++)
        {
            var layer = decoupled.Blocks[l].Mixer as GroupedKvAttention
                ?? throw new ArgumentException($"block {l} is not a GroupedKvAttention (Decouple the MHA first).", nameof(decoupled));
            foreach (var kind in new[] { HeadKind.Key, HeadKind.Value })
            {
                var fused = FusedHeads(layer, kind);                                    // W̃ [H, P]
                var mean = GroupMean(plan.Groups(l, kind), fused.dtype, fused.device);  // M[i, j] = 1/|G(i)| for j ∈ G(i)
                var term = (fused - mean.matmul(fused)).pow(2).sum();                   // Σ_i ‖W̃_i − mean_{G(i)} W̃‖²
                total = total is null ? term : total + term;
            }
        }
        return total!.MoveToOuterDisposeScope();
    }

    /// <summary>W̃_s = Σ_h (F ⊙ support)[s, h] [W^h ; b^h] flattened: [S, d·D (+ D)] (differentiable in F and the weights).</summary>
    internal static Tensor FusedHeads(GroupedKvAttention layer, HeadKind kind)
    {
        using var scope = NewDisposeScope();
        var map = kind == HeadKind.Key ? layer.KeyMap : layer.ValueMap;
        var fusion = kind == HeadKind.Key ? layer.KeyFusion : layer.ValueFusion;
        var mask = Tensor2(map.Support.Cast<bool>().Select(b => b ? 1.0 : 0.0).ToArray(), map.Slots, map.Heads).to(fusion.dtype).to(fusion.device);
        var w = (kind == HeadKind.Key ? layer.W_K : layer.W_V).reshape(layer.Heads, -1);   // [H, d·D]
        var bias = HeadBias(layer, kind);
        if (bias is not null) w = torch.cat(new[] { w, bias }, 1);
        return (fusion * mask).matmul(w).MoveToOuterDisposeScope();
    }

    static Tensor Exact(double[,] m) => Tensor2(m.Cast<double>().ToArray(), m.GetLength(0), m.GetLength(1));

    static Tensor Tensor2(double[] data, long rows, long cols) => torch.tensor(data, new[] { rows, cols }, dtype: ScalarType.Float64);

    static Tensor GroupMean(int[] groups, ScalarType dtype, Device device)
    {
        int h = groups.Length;
        var m = new double[h * h];
        for (int i = 0; i < h; i++)
        {
            int size = groups.Count(g => g == groups[i]);
            for (int j = 0; j < h; j++) if (groups[j] == groups[i]) m[i * h + j] = 1.0 / size;
        }
        return Tensor2(m, h, h).to(dtype).to(device);
    }

    /// <summary>
    /// The fusion stage: trains only ω (every other parameter frozen, no weight decay) on <paramref name="lmLoss"/>(step) +
    /// λ · L_fuse / L_fuse(ω = I), λ ← λ + μ · L_fuse / L_fuse(ω = I) after each step (<paramref name="schedule"/>).
    /// Returns the relative L_fuse and λ per step.
    /// </summary>
    public static FusionHistory FusionTrain(TinyGpt decoupled, DhaPlan plan, int steps, LagrangeSchedule schedule, Func<int, Tensor> lmLoss,
        IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(decoupled);
        ArgumentNullException.ThrowIfNull(schedule);
        ArgumentNullException.ThrowIfNull(lmLoss);
        if (steps < 0) throw new ArgumentException($"steps must be ≥ 0, got {steps}.", nameof(steps));
        double start;
        using (torch.no_grad()) using (var s0 = FusionLoss(decoupled, plan)) start = s0.to(ScalarType.Float64).item<double>();
        if (!(start > 0)) start = 1;                                                    // every group a singleton (or identical heads): nothing to fuse
        var frozen = decoupled.named_parameters().Where(p => p.parameter.requires_grad && !p.name.Contains("fusion_", StringComparison.Ordinal))
            .Select(p => p.parameter).ToList();
        foreach (var p in frozen) p.requires_grad_(false);
        var relative = new List<double>();
        var lambdas = new List<double>();
        double lambda = schedule.Lambda0;
        try
        {
            if (steps > 0)
                Trainer.Fit(decoupled, step =>
                {
                    var fuse = FusionLoss(decoupled, plan) / start;
                    double r = fuse.detach().to(ScalarType.Float64).item<double>();
                    relative.Add(r);
                    lambdas.Add(lambda);
                    var loss = lmLoss(step) + lambda * fuse;                           // LM + λ·L_fuse
                    lambda += schedule.Mu * r;                                          // λ ← λ + μ·L_fuse
                    return loss;
                }, new TrainOptions(steps, schedule.LearningRate, WeightDecay: 0, MinLearningRateRatio: 1, ClipNorm: 0, ReportEvery: Math.Max(1, steps / 2)),
                    progress is null ? null : new Core.InlineProgress<TrainProgress>(p => progress.Report($"  fusion: {p}")));
        }
        finally
        {
            foreach (var p in frozen) p.requires_grad_(true);
        }
        double end;
        using (torch.no_grad()) using (var s1 = FusionLoss(decoupled, plan)) end = s1.to(ScalarType.Float64).item<double>() / start;
        return new FusionHistory(start, end, relative, lambdas);
    }

    /// <summary>
    /// The collapse: a copy of the decoupled model whose layers cache one head per group, F[G, ·] = mean_{i∈G} ω[i, ·]
    /// (fixed); every other parameter copied. With ω = I this is the plan's mean-pool grouping.
    /// </summary>
    public static TinyGpt Collapse(TinyGpt decoupled, DhaPlan plan)
    {
        ArgumentNullException.ThrowIfNull(decoupled);
        CheckPlan(decoupled, plan);
        var layers = Enumerable.Range(0, plan.Layers).Select(l => decoupled.Blocks[l].Mixer as GroupedKvAttention
            ?? throw new ArgumentException($"block {l} is not a GroupedKvAttention.", nameof(decoupled))).ToList();
        var w = decoupled.FinalNorm.Weight;
        var collapsed = new TinyGpt(decoupled.Config, l => new GroupedKvAttention(decoupled.Config.DModel, decoupled.Config.Heads,
            KvHeadMap.Collapse(layers[l].KeyFusionValues(), plan.KeyGroups[l]), KvHeadMap.Collapse(layers[l].ValueFusionValues(), plan.ValueGroups[l]),
            layers[l].PositionKind, decoupled.Config.RopeBase, trainableFusion: false, decoupled.Config.RopeScale));
        collapsed.to(w.device).to(w.dtype);
        var source = decoupled.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (torch.no_grad())
        {
            foreach (var (name, p) in collapsed.named_parameters())
                if (!name.Contains("fusion_", StringComparison.Ordinal)) p.copy_(source[name]);
            foreach (var layer in collapsed.Blocks.Select(b => (GroupedKvAttention)b.Mixer))
            {
                layer.KeyFusion.copy_(Exact(layer.KeyMap.Fusion));                      // the layer builds F in float32; keep float64 models exact
                layer.ValueFusion.copy_(Exact(layer.ValueMap.Fusion));
            }
        }
        return collapsed;
    }

    /// <summary>KV-cache bytes per token of a model: Σ over its layers (MHA: 2·H·d_h; grouped: S_K·D + S_V·Dv) × element size.</summary>
    public static long KvBytesPerToken(TinyGpt model, ScalarType dtype = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(model);
        long bytes = 0;
        for (int l = 0; l < model.Config.Layers; l++)
            bytes += model.Blocks[l].Mixer switch
            {
                GroupedKvAttention g => g.KvBytesPerToken(dtype),
                AttentionMixer a => ((long)a.Heads * a.KeyDim + (long)a.Heads * a.ValueDim) * ElementSize(dtype),
                var m => throw new ArgumentException($"block {l} has a {m.GetType().Name}: no KV bytes known.", nameof(model)),
            };
        return bytes;
    }

    /// <summary>The spec's formula: Σ_ℓ (g_K^ℓ + g_V^ℓ) · d_h · bytes = cachedHeads · d_h · bytes.</summary>
    public static long KvBytesFormula(int cachedHeads, int headDim, ScalarType dtype = ScalarType.Float32) =>
        (long)cachedHeads * headDim * ElementSize(dtype);

    static long ElementSize(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        return torch.empty(0, dtype: dtype).ElementSize;
    }
}

/// <summary>The fusion stage's Lagrangian schedule: λ starts at Lambda0 and rises by μ · L_fuse/L_fuse(ω = I) each step; ω's Adam learning rate.</summary>
public sealed record LagrangeSchedule(double Lambda0, double Mu, double LearningRate);

/// <summary>L_fuse at ω = I (absolute), at the end (relative to the start), and per step the relative L_fuse and λ.</summary>
public sealed record FusionHistory(double Start, double EndRelative, IReadOnlyList<double> Relative, IReadOnlyList<double> Lambdas);
