using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Models;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.FreeSwim;

/// <summary>One grid: keys per query and forward ms of full attention vs the gather inward window.</summary>
public sealed record FreeSwimBenchRow(int Frames, int Side, int Tokens, string Method, double KeysPerQuery, double MedianMs);

/// <summary>
/// P45 §8: per-query keys T(2d_h+1)(2d_w+1) vs T·H·W and the forward time of one self-attention layer (batch 1,
/// float32): full attention (the model's dense path) vs the inward window by gather (<see cref="WindowAttention"/>),
/// plus the dense boolean mask twin up to <c>maxDense</c> tokens (what a naive O(N²) mask costs).
/// </summary>
public static class FreeSwimBenchmark
{
    public static IReadOnlyList<FreeSwimBenchRow> Run(int[] sides, int frames, int half, int heads, int dim, int repeats, int maxDense, Device device,
        IProgress<FreeSwimBenchRow>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(sides);
        Guard.Positive(frames, nameof(frames)); Guard.Positive(heads, nameof(heads)); Guard.Positive(dim, nameof(dim));
        Guard.Positive(repeats, nameof(repeats));
        var rows = new List<FreeSwimBenchRow>();
        foreach (int side in sides)
        {
            int n = frames * side * side;
            torch.manual_seed(0);
            using var q = torch.randn(new long[] { 1, n, heads, dim }, device: device);
            using var k = torch.randn(new long[] { 1, n, heads, dim }, device: device);
            using var v = torch.randn(new long[] { 1, n, heads, dim }, device: device);
            using var window = WindowMasks.InwardSliding(frames, side, side, half, half, device);
            void Add(string method, double keys, Action a)
            {
                var row = new FreeSwimBenchRow(frames, side, n, method, keys, Benchmark.Time(a, warmup: 1, repeats: repeats, device: device).MedianMs);
                rows.Add(row); progress?.Report(row);
            }
            Add("full", n, () => { using var s = NewDisposeScope(); TinyDiT.FullAttention(q, k, v, null); });
            Add("inward gather", window.KeysPerQuery.Average(), () => { using var s = NewDisposeScope(); WindowAttention.Forward(q, k, v, window); });
            if (n <= maxDense)
                Add("inward dense mask", window.KeysPerQuery.Average(),
                    () => { using var s = NewDisposeScope(); FreeSwimNaive.WindowAttention(q, k, v, window); });
        }
        return rows;
    }

    /// <summary>Columns: frames, grid, tokens, method, keys_per_query, median_ms.</summary>
    public static DataFrame ToDataFrame(IReadOnlyList<FreeSwimBenchRow> rows) => Tables.From(rows.Select(r => new
        {
            r.Frames,
            Grid = $"{r.Side}×{r.Side}",
            r.Tokens,
            r.Method,
            r.KeysPerQuery,
            r.MedianMs,
        }));
}
