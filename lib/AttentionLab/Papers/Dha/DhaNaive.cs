using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Dha;

/// <summary>
/// The naive twin of <see cref="DhaConverter"/>: the fusion cost, the search and L_fuse written from their definitions with
/// loops over groups and heads (float64), never fast.
/// </summary>
public static class DhaNaive
{
    /// <summary>SSE(G) = Σ_{h∈G} ‖w_h − w̄_G‖², from the definition.</summary>
    public static double GroupCost(double[][] vectors, IReadOnlyCollection<int> members)
    {
        ArgumentNullException.ThrowIfNull(vectors);
        ArgumentNullException.ThrowIfNull(members);
        if (members.Count == 0) return 0;
        int n = vectors[0].Length;
        var mean = new double[n];
        foreach (var h in members) for (int i = 0; i < n; i++) mean[i] += vectors[h][i] / members.Count;
        double cost = 0;
        foreach (var h in members) for (int i = 0; i < n; i++) cost += (vectors[h][i] - mean[i]) * (vectors[h][i] - mean[i]);
        return cost;
    }

    /// <summary>
    /// The search from its definition (head vectors scaled by their partition's RMS norm): every step recomputes,
    /// for every pair of groups in every partition, the growth
    /// SSE(A ∪ B) − SSE(A) − SSE(B), and merges the least (ties: lower layer, K before V, lower pair), until the budget is met.
    /// </summary>
    public static DhaPlan Search(TinyGpt model, double ratio)
    {
        ArgumentNullException.ThrowIfNull(model);
        int layers = model.Config.Layers, heads = model.Config.Heads;
        int target = DhaConverter.Target(layers, heads, ratio);
        var vectors = new List<double[][]>();
        var partitions = new List<List<List<int>>>();
        for (int l = 0; l < layers; l++)
            foreach (var kind in new[] { HeadKind.Key, HeadKind.Value })
            {
                using var w = DhaConverter.HeadVectors(DhaConverter.Mixer(model, l), kind);
                var rows = Enumerable.Range(0, heads).Select(h => w[h].data<double>().ToArray()).ToArray();
                double meanSquare = rows.Average(r => r.Sum(v => v * v));                  // mean_h ‖w_h‖²
                vectors.Add(rows.Select(r => r.Select(v => v / Math.Sqrt(meanSquare)).ToArray()).ToArray());
                partitions.Add(Enumerable.Range(0, heads).Select(h => new List<int> { h }).ToList());
            }
        while (partitions.Sum(p => p.Count) > target)
        {
            (int p, int a, int b, double cost) best = (-1, -1, -1, double.PositiveInfinity);
            for (int p = 0; p < partitions.Count; p++)
                for (int a = 0; a < partitions[p].Count; a++)
                    for (int b = a + 1; b < partitions[p].Count; b++)
                    {
                        var union = partitions[p][a].Concat(partitions[p][b]).ToList();
                        double growth = GroupCost(vectors[p], union) - GroupCost(vectors[p], partitions[p][a]) - GroupCost(vectors[p], partitions[p][b]);
                        if (growth < best.cost) best = (p, a, b, growth);
                    }
            partitions[best.p][best.a].AddRange(partitions[best.p][best.b]);
            partitions[best.p].RemoveAt(best.b);
        }
        int[] Groups(List<List<int>> part) =>
            DhaConverter.Canonical(Enumerable.Range(0, heads).Select(h => part.FindIndex(g => g.Contains(h))).ToArray());
        double cost = partitions.Select((part, p) => part.Sum(g => GroupCost(vectors[p], g))).Sum();
        return new DhaPlan(ratio, target, partitions.Where((_, i) => i % 2 == 0).Select(Groups).ToList(),
            partitions.Where((_, i) => i % 2 == 1).Select(Groups).ToList(), cost);
    }

    /// <summary>
    /// L_fuse by loops: for every layer, kind, group G and member i, W̃_i = Σ_{j∈G} ω_ij [W_j ; b_j] built head by head, then
    /// ‖W̃_i − (1/|G|) Σ_{k∈G} W̃_k‖² summed. Differentiable in ω (same graph leaves as the fast form).
    /// </summary>
    public static Tensor FusionLoss(TinyGpt decoupled, DhaPlan plan)
    {
        ArgumentNullException.ThrowIfNull(decoupled);
        ArgumentNullException.ThrowIfNull(plan);
        Tensor total = torch.zeros(Array.Empty<long>(), dtype: decoupled.FinalNorm.Weight.dtype);
        for (int l = 0; l < plan.Layers; l++)
        {
            var layer = (GroupedKvAttention)decoupled.Blocks[l].Mixer;
            foreach (var kind in new[] { HeadKind.Key, HeadKind.Value })
            {
                var omega = kind == HeadKind.Key ? layer.KeyFusion : layer.ValueFusion;
                var w = (kind == HeadKind.Key ? layer.W_K : layer.W_V).reshape(layer.Heads, -1);
                var bias = DhaConverter.HeadBias(layer, kind);
                if (bias is not null) w = torch.cat(new[] { w, bias }, 1);
                var groups = plan.Groups(l, kind);
                foreach (var g in groups.Distinct())
                {
                    var members = Enumerable.Range(0, groups.Length).Where(h => groups[h] == g).ToArray();
                    var fused = members.Select(i =>
                    {
                        Tensor acc = torch.zeros_like(w[0]);
                        foreach (var j in members) acc = acc + omega[i, j] * w[j];        // W̃_i = Σ_{j∈G} ω_ij W_j
                        return acc;
                    }).ToArray();
                    Tensor mean = torch.zeros_like(w[0]);
                    foreach (var f in fused) mean = mean + f / members.Length;
                    foreach (var f in fused) total = total + (f - mean).pow(2).sum();
                }
            }
        }
        return total;
    }
}
