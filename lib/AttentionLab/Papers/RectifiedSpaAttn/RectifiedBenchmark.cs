using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using Microsoft.Data.Analysis;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RectifiedSpaAttn;

/// <summary>One benchmark point: method, tokens, target and measured density (share of token pairs computed), median ms of one forward.</summary>
public sealed record RectifiedBenchRow(string Method, int Length, double TargetDensity, double Density, double MedianMs);

/// <summary>
/// Forward speed (inference, no backward) of the gathered block-sparse kernel and of the whole rectified forward
/// (estimation + kernel + rectification) vs full attention (reference and SDPA), batch 1, float32, on synthetic
/// video-like Q/K/V (γ = 2) laid out as frames × 16×16 (T ≤ 1024) or frames × 32×32 in Hilbert order. Densities are
/// set with top-k critical sets (τ = 0, minTopK = ⌈ρ·nb⌉) so every method runs at the same, known sparsity; the
/// estimation stage (pooled scores, IPAR, critical sets, GAPR: O((T/B)²·d)) is timed on its own. Dense forms above
/// <c>maxDense</c> tokens are skipped (the T² score matrix).
/// </summary>
public static class RectifiedBenchmark
{
    /// <summary>Method names.</summary>
    public const string Reference = "reference", Sdpa = "sdpa", Estimate = "estimate only", Gather = "gather kernel", Rectified = "rectified (all)";

    /// <summary>frames × side × side with side 16 up to 1024 tokens, else 32.</summary>
    public static (int Frames, int Side) Grid(int tokens)
    {
        int side = tokens <= 1024 ? 16 : 32;
        if (tokens <= 0 || tokens % (side * side) != 0)
            throw new ArgumentException($"length {tokens} must be a positive multiple of {side}×{side}.", nameof(tokens));
        return (tokens / (side * side), side);
    }

    /// <summary>Runs the sweep; one progress report per point.</summary>
    public static IReadOnlyList<RectifiedBenchRow> Run(int[] lengths, int heads, int dim, int block, double[] densities, int repeats, int maxDense,
        Device device, IProgress<RectifiedBenchRow>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        ArgumentNullException.ThrowIfNull(densities);
        if (densities.Length == 0 || densities.Any(r => !(r > 0 && r <= 1))) throw new ArgumentException("densities must be in (0, 1].", nameof(densities));
        var rows = new List<RectifiedBenchRow>();
        foreach (int n in lengths)
        {
            var (frames, side) = Grid(n);
            var (q64, k64, v64) = SyntheticVideoQkv.Generate(frames, side, side, dim, 2.0, 0.1, 0, seed: 0, heads: heads);
            using var q = q64.to(ScalarType.Float32, device); using var k = k64.to(ScalarType.Float32, device); using var v = v64.to(ScalarType.Float32,
                device);
            q64.Dispose(); k64.Dispose(); v64.Dispose();
            int nb = (n + block - 1) / block;
            void Add(string method, double target, double density, Action run)
            {
                var t = Benchmark.Time(run, warmup: 1, repeats: repeats, device: device);
                var row = new RectifiedBenchRow(method, n, target, density, t.MedianMs);
                rows.Add(row);
                progress?.Report(row);
            }
            if (n <= maxDense)
            {
                Add(Reference, 1, 1, () => { using var r = ReferenceAttention.Softmax(q, k, v); });
                Add(Sdpa, 1, 1, () => SdpaBaseline.Forward(q, k, v).Dispose());
            }
            foreach (double rho in densities)
            {
                int topK = Math.Max(1, (int)Math.Ceiling(rho * nb));
                double density;
                Tensor selected;
                {
                    var (o, d) = RectifiedSparseAttention.Forward(q, k, v, block, tau: 0, minTopK: topK);
                    density = d.Density;
                    selected = d.Selected.clone();
                    o.Dispose(); d.Dispose();
                }
                using (selected)
                {
                    Add(Estimate, rho, density, () => RectifiedSparseAttention.Estimate(q, k, block, tau: 0, minTopK: topK).Dispose());
                    Add(Gather, rho, density, () => RectifiedSparseAttention.BlockSparse(q, k, v, selected, block).Dispose());
                    Add(Rectified, rho, density, () => { var (o, d) = RectifiedSparseAttention.Forward(q, k, v, block, tau: 0,
                        minTopK: topK); o.Dispose(); d.Dispose(); });
                }
            }
        }
        return rows;
    }

    /// <summary>Columns: method, n, target_density, density, median_ms.</summary>
    public static DataFrame ToDataFrame(IReadOnlyList<RectifiedBenchRow> rows) => Tables.From(rows.Select(r => new
        {
            r.Method,
            N = r.Length,
            r.TargetDensity,
            r.Density,
            r.MedianMs,
        }));
}
