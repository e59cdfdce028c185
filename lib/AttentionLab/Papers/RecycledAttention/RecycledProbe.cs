using AttentionLab.Data;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RecycledAttention;

/// <summary>
/// Attention-mass recovery on the full model's own patterns. <see cref="Recycled"/>[Δ] and <see cref="SinkWindow"/>[Δ]:
/// mean over layers, sequences and heads of Σ_{j∈J} A_{t₀+Δ, j} for J = I ∪ {t₀+1 … t₀+Δ} (I = top-K of row t₀) and for
/// the StreamingLLM set of the same size. <see cref="Heatmap"/>: rows t = t₀ … n−1 of one head's full pattern (first
/// sequence); <see cref="Selected"/>: 1 where the recycled set with stride <see cref="Stride"/> holds the key.
/// </summary>
public sealed record MassProbe(int TopK, int Stride, int FullStep, double[] Recycled, double[] SinkWindow, double[][] Heatmap, double[][] Selected, int Layer,
    int Head);

/// <summary>Computes <see cref="MassProbe"/> from one full forward pass (training-free).</summary>
public static class RecycledProbe
{
    /// <summary>Probes <paramref name="model"/> on <paramref name="batch"/> with the full step at t₀ = prefill − 1.</summary>
    public static MassProbe Measure(TinyGpt model, TokenBatch batch, int prefill, int topK, int stride, int sinkTokens)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batch);
        int n = (int)batch.Length, t0 = prefill - 1;
        if (prefill < 1 || prefill > n) throw new ArgumentException($"prefill must be in [1, {n}], got {prefill}.", nameof(prefill));
        if (topK <= sinkTokens) throw new ArgumentException($"topK must exceed sinkTokens {sinkTokens}, got {topK}.", nameof(topK));
        if (stride <= 0) throw new ArgumentException($"stride must be positive, got {stride}.", nameof(stride));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (_, cache) = model.RunWithCache(batch.Tokens, name => name.EndsWith("attn.hook_pattern", StringComparison.Ordinal));
        using (cache)
        {
            int deltas = n - t0, layers = model.LayerCount;
            var recycled = new double[deltas];
            var window = new double[deltas];
            for (int layer = 0; layer < layers; layer++)
            {
                var a = cache["pattern", layer].to(ScalarType.Float64);                               // [B, H, T, T]
                var top = a.select(2, t0).topk(Math.Min(topK, t0 + 1), -1).indexes;                   // I per head [B, H, K]
                for (int d = 0; d < deltas; d++)
                {
                    int t = t0 + d;
                    var row = a.select(2, t);                                                           // A_{t, ·}
                    var fresh = torch.arange(t0 + 1, t + 1, dtype: ScalarType.Int64).expand(top.shape[0], top.shape[1], d);
                    var j = torch.cat(new[] { top, fresh }, 2);                                         // I ∪ {t₀+1 … t}
                    recycled[d] += AttentionMass.Recovery(row, j) / layers;
                    long size = j.shape[2], w = Math.Min(size - sinkTokens, t + 1 - sinkTokens);
                    var sw = torch.cat(new[] { torch.arange(sinkTokens, dtype: ScalarType.Int64), torch.arange(t + 1 - w, t + 1, dtype: ScalarType.Int64) })
                        .expand(top.shape[0], top.shape[1], sinkTokens + w);                            // sinks + last w: same size
                    window[d] += AttentionMass.Recovery(row, sw) / layers;
                }
            }
            int last = layers - 1;
            var pattern = cache["pattern", last][0].to(ScalarType.Float64);                             // [H, T, T]
            int head = (int)pattern.select(1, t0).max(-1).values.argmax().item<long>();                  // the sharpest head at t₀
            var rows = pattern[head].narrow(0, t0, deltas);
            var heat = Enumerable.Range(0, deltas).Select(i => rows[i].data<double>().ToArray()).ToArray();
            var selected = new double[deltas][];
            int[] set = Array.Empty<int>();
            int full = t0;
            for (int i = 0; i < deltas; i++)
            {
                int t = t0 + i;
                if (i % stride == 0)
                {
                    full = t;
                    set = heat[i].Select((p, j) => (p, j)).OrderByDescending(x => x.p).Take(topK).Select(x => x.j).ToArray();
                }
                selected[i] = new double[n];
                foreach (int j in set.Concat(Enumerable.Range(full + 1, t - full))) selected[i][j] = 1;
            }
            return new MassProbe(topK, stride, t0, recycled, window, heat, selected, last, head);
        }
    }
}
