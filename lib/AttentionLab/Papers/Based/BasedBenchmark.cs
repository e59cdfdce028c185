using System.Diagnostics;
using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Based;

/// <summary>
/// One prefill timing is a <see cref="SweepPoint"/> (slopes and crossovers: <see cref="Sweep"/>). One decode window: mean ms per token over the window ending
/// at token t, and the state bytes after t tokens.
/// </summary>
public sealed record DecodePoint(string Method, int T, double MsPerToken, long StateBytes);

/// <summary>
/// Speed and memory of BASED's linear attention against full softmax attention (tables, never assertions):
/// prefill (a whole sequence, forward only) and decode (one token at a time with the state or a KV cache).
/// </summary>
public static class BasedBenchmark
{
    /// <summary>Method names of <see cref="Prefill"/>.</summary>
    public const string BasedChunked = "based-chunked", BasedFla = "based-fla", Reference = "softmax-reference", Sdpa = "softmax-sdpa";

    /// <summary>
    /// Prefill forward time on random inputs [B, T, H, ·]: BASED (q, k of width d′, v of width Dv; engine chunked form and
    /// fla's decomposition) vs causal softmax attention with head dim Dv (reference: explicit T × T scores, only up to
    /// <paramref name="maxReferenceLength"/>; SDPA: the fused kernel). With <paramref name="measureMemory"/> every call's
    /// peak RSS growth is measured first (Linux; see <see cref="Benchmark.PeakMemory"/>), then the timings.
    /// </summary>
    public static IReadOnlyList<SweepPoint> Prefill(IEnumerable<int> lengths, int batch = 1, int heads = 4, int featureDim = 16, int headDim = 64,
        int chunkSize = 64, int warmup = 1, int repeats = 3, int maxReferenceLength = 4096, bool includeFla = true, bool measureMemory = false,
        Device? device = null, IProgress<SweepPoint>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        var ts = lengths.ToArray();
        if (ts.Length == 0 || ts.Any(t => t <= 0)) throw new ArgumentException("lengths must be a non-empty list of positive lengths.", nameof(lengths));
        Guard.Positive(batch, nameof(batch)); Guard.Positive(heads, nameof(heads));
        Guard.Positive(featureDim, nameof(featureDim)); Guard.Positive(headDim, nameof(headDim));
        return Benchmark.Sweep(ts, ForEachMethod, (name, t, time, mib) => new SweepPoint(name, t, time.MedianMs, mib), warmup, repeats, device, measureMemory,
            progress);

        void ForEachMethod(int t, Action<string, Action> body)
        {
            using var scope = NewDisposeScope();
            using var noGrad = torch.no_grad();
            torch.manual_seed(t);
            var q = torch.randn(new long[] { batch, t, heads, featureDim }, device: device);
            var k = torch.randn(new long[] { batch, t, heads, featureDim }, device: device);
            var qs = torch.randn(new long[] { batch, t, heads, headDim }, device: device);
            var ks = torch.randn(new long[] { batch, t, heads, headDim }, device: device);
            var v = torch.randn(new long[] { batch, t, heads, headDim }, device: device);
            body(BasedChunked, () => BasedAttention.Linear(LinearForm.Chunked, q, k, v, chunkSize: chunkSize).Dispose());
            if (includeFla) body(BasedFla, () => BasedAttention.TaylorChunked(q, k, v, chunkSize).Dispose());
            if (t <= maxReferenceLength) body(Reference, () => ReferenceAttention.Softmax(qs, ks, v, causal: true).Dispose());
            body(Sdpa, () => SdpaBaseline.Forward(qs, ks, v, causal: true).Dispose());
        }
    }

    /// <summary>
    /// Decoding <paramref name="length"/> tokens one at a time on random inputs (attention cores only, no projections):
    /// BASED's recurrent step (state H·F·(Dv + 1) floats, constant) vs softmax over a growing KV cache (2·t·H·Dv floats).
    /// Reports the mean ms per token in windows of <paramref name="window"/> tokens.
    /// </summary>
    public static IReadOnlyList<DecodePoint> Decode(int length, int heads = 16, int featureDim = 16, int headDim = 64, int window = 128, Device? device = null)
    {
        Guard.Positive(length, nameof(length)); Guard.Positive(window, nameof(window));
        var points = new List<DecodePoint>();
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(0);
        var q = torch.randn(new long[] { length, 1, heads, headDim }, device: device);
        var k = torch.randn(new long[] { length, 1, heads, headDim }, device: device);
        var v = torch.randn(new long[] { length, 1, heads, headDim }, device: device);
        var qf = q.narrow(3, 0, featureDim);
        var kf = k.narrow(3, 0, featureDim);
        using (var stream = new LinearAttentionStream(1, heads, featureDim, headDim, device: device, options: BasedAttention.Options(featureDim)))
            Windows("based (recurrent state)", t => { using var s = NewDisposeScope(); stream.Step(qf[t], kf[t], v[t]); }, () => stream.Bytes);
        using (var cache = new KvCache(1, heads, headDim, headDim, device: device))
            Windows("softmax (KV cache)", t =>
            {
                using var s = NewDisposeScope();
                cache.Append(k[t].unsqueeze(1), v[t].unsqueeze(1));
                ReferenceAttention.Softmax(q[t].unsqueeze(1), cache.Keys, cache.Values).Dispose();
            }, () => cache.Bytes);
        return points;

        void Windows(string name, Action<int> step, Func<long> bytes)
        {
            var clock = new Stopwatch();
            for (int start = 0; start < length; start += window)
            {
                int end = Math.Min(length, start + window);
                if (device?.type == DeviceType.CUDA) torch.cuda.synchronize();
                clock.Restart();
                for (int t = start; t < end; t++) step(t);
                if (device?.type == DeviceType.CUDA) torch.cuda.synchronize();
                points.Add(new DecodePoint(name, end, clock.Elapsed.TotalMilliseconds / (end - start), bytes()));
            }
        }
    }

    /// <summary>Columns: method, seq_len, median_ms, peak_mib, speedup_vs_sdpa, speedup_vs_reference.</summary>
    public static DataFrame ToDataFrame(IReadOnlyList<SweepPoint> points) =>
        Sweep.ToDataFrame(points, ("speedup_vs_sdpa", Sdpa), ("speedup_vs_reference", Reference));
}
