using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Core;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RecycledAttention;

/// <summary>One decode-attention timing: context n, method, mean ms per step, keys read per head per step, the model n/(K + n/S).</summary>
public sealed record RecycledBenchRow(int Context, string Method, double MsPerStep, double AttendedMean, double ExpectedSpeedup);

/// <summary>Decode attention of one layer (no model) at long context: full vs Recycled Attention. A benchmark, not a test.</summary>
public static class RecycledBenchmarks
{
    /// <summary>
    /// For each n: a cache of n − 1 random keys, then <paramref name="steps"/> decode steps (the first one full), timed per
    /// step, for full attention and for Recycled Attention (K, S). Random data: only cost is measured.
    /// </summary>
    public static IReadOnlyList<RecycledBenchRow> DecodeSweep(int[] lengths, int heads, int dim, int topK, int stride, int steps, Device device,
        IProgress<RecycledBenchRow>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        if (lengths.Length == 0 || lengths.Any(n => n < 2)) throw new ArgumentException("lengths must be non-empty, each ≥ 2.", nameof(lengths));
        Guard.Positive(heads, nameof(heads)); Guard.Positive(dim, nameof(dim)); Guard.Positive(steps, nameof(steps));
        var rows = new List<RecycledBenchRow>();
        foreach (int n in lengths)
            foreach (var (name, make) in new (string, Func<IKvSelector>)[]
            {
                ("full", () => new FullSelector()),
                ($"recycled K={topK} S={stride}", () => new RecycledAttentionPolicy(topK, stride, prefill: n)),
            })
            {
                using var scope = NewDisposeScope();
                using var noGrad = torch.no_grad();
                var gen = new Generator(seed: (ulong)n, device: device);
                using var cache = new SelectiveKvCache(make());
                cache.Append(torch.randn(1, n - 1, heads, dim, generator: gen, device: device),
                    torch.randn(1, n - 1, heads, dim, generator: gen, device: device));
                var clock = new Stopwatch();
                for (int s = 0; s < steps; s++)
                {
                    using var stepScope = NewDisposeScope();
                    var (q, k, v) = (torch.randn(1, 1, heads, dim, generator: gen, device: device),
                        torch.randn(1, 1, heads, dim, generator: gen, device: device), torch.randn(1, 1, heads, dim, generator: gen, device: device));
                    clock.Start();
                    var r = cache.Attend(q, k, v);
                    _ = r.Output.sum().item<float>();                               // wait for the device
                    clock.Stop();
                }
                double expected = name == "full" ? 1 : n / (topK + (double)n / stride);
                var row = new RecycledBenchRow(n, name, clock.Elapsed.TotalMilliseconds / steps, cache.Trace.Average(x => x.AttendedMean), expected);
                rows.Add(row);
                progress?.Report(row);
            }
        return rows;
    }

    /// <summary>Columns: n, method, ms_per_step, attended_mean, expected_speedup, measured_speedup (full ms / method ms).</summary>
    public static DataFrame ToDataFrame(IReadOnlyList<RecycledBenchRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        double Full(int n) => rows.First(r => r.Context == n && r.Method == "full").MsPerStep;
        return Tables.From(rows.Select(r => new
            {
                N = r.Context,
                r.Method,
                r.MsPerStep,
                r.AttendedMean,
                r.ExpectedSpeedup,
                MeasuredSpeedup = Full(r.Context) / r.MsPerStep,
            }));
    }
}
