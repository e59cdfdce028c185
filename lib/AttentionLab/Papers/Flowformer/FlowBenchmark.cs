using AttentionLab.Attention;
using AttentionLab.Bench;
using AttentionLab.Core;
using Microsoft.Data.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Flowformer;

/// <summary>Time and memory of Flow-Attention against full softmax attention, forward or forward + backward (tables, never assertions).</summary>
public static class FlowBenchmark
{
    /// <summary>Method names of <see cref="Speed"/>.</summary>
    public const string FlowCausal = "flow-causal", FlowNormal = "flow-normal", Linear = "linear-sigmoid", Reference = "softmax-reference",
        Sdpa = "softmax-sdpa";

    /// <summary>Pass names: one forward without gradients, or a forward and the backward of Σ o ⊙ g (g fixed, random) to q, k, v.</summary>
    public const string Forward = "forward", ForwardBackward = "forward+backward";

    /// <summary>
    /// Time of the attention cores on random q, k, v [B, T, H, D]: causal Flow-Attention (engine chunked form), normal
    /// Flow-Attention, plain causal σ linear attention (normalised, chunked), and causal softmax attention — the reference
    /// (explicit T × T scores; only up to <paramref name="maxReferenceLength"/>) and the fused SDPA. <paramref name="backward"/>:
    /// each call is a forward plus the backward of Σ o ⊙ g to q, k, v (spec §8: fwd + bwd); otherwise a forward under
    /// no_grad. With <paramref name="measureMemory"/> each call's peak RSS growth is measured after the timings (Linux).
    /// </summary>
    public static IReadOnlyList<SweepPoint> Speed(IEnumerable<int> lengths, int batch = 1, int heads = 4, int headDim = 64, int chunkSize = 64,
        int warmup = 1, int repeats = 3, int maxReferenceLength = 4096, bool measureMemory = false, Device? device = null,
        IProgress<SweepPoint>? progress = null,
        bool backward = false)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        var ts = lengths.ToArray();
        if (ts.Length == 0 || ts.Any(t => t <= 0)) throw new ArgumentException("lengths must be a non-empty list of positive lengths.", nameof(lengths));
        Guard.Positive(batch, nameof(batch)); Guard.Positive(heads, nameof(heads)); Guard.Positive(headDim, nameof(headDim));
        Guard.Positive(chunkSize, nameof(chunkSize));
        string pass = backward ? ForwardBackward : Forward;
        return Benchmark.Sweep(ts, ForEachMethod, (name, t, time, mib) => new SweepPoint(name, t, time.MedianMs, mib, pass), warmup, repeats, device,
            measureMemory, progress);

        void ForEachMethod(int t, Action<string, Action> body)
        {
            using var scope = NewDisposeScope();
            using var noGrad = backward ? null : torch.no_grad();
            torch.manual_seed(t);
            var q = torch.randn(new long[] { batch, t, heads, headDim }, device: device);
            var k = torch.randn(new long[] { batch, t, heads, headDim }, device: device);
            var v = torch.randn(new long[] { batch, t, heads, headDim }, device: device);
            var g = torch.randn(new long[] { batch, t, heads, headDim }, device: device);   // the upstream gradient of a fwd + bwd call
            var linear = new LinearAttentionOptions { FeatureMap = FeatureMaps.Sigmoid, Normalize = true, ChunkSize = chunkSize };
            void Timed(string name, Func<Tensor, Tensor, Tensor, Tensor> attend) => body(name, () =>
            {
                if (!backward) { attend(q, k, v).Dispose(); return; }
                var (qg, kg, vg) = (q.detach().requires_grad_(), k.detach().requires_grad_(), v.detach().requires_grad_());   // fresh leaves each call
                (attend(qg, kg, vg) * g).sum().backward();                                 // ∂/∂q, k, v of Σ o ⊙ g
            });
            Timed(FlowCausal, (q, k, v) => FlowAttention.Attend(q, k, v, causal: true, chunkSize: chunkSize));
            Timed(FlowNormal, (q, k, v) => FlowAttention.Attend(q, k, v, causal: false));
            Timed(Linear, (q, k, v) => { using var r = LinearAttention.Chunked(q, k, v, options: linear); return r.Output.alias(); });
            if (t <= maxReferenceLength) Timed(Reference, (q, k, v) =>
                { using var r = ReferenceAttention.Softmax(q, k, v, causal: true); return r.Output.alias(); });
            Timed(Sdpa, (q, k, v) => SdpaBaseline.Forward(q, k, v, causal: true));
        }
    }

    /// <summary>
    /// Columns: pass, method, seq_len, median_ms, peak_mib, speedup_vs_sdpa, speedup_vs_reference (speed-ups within a pass).
    /// Slopes, crossovers and speed-ups of the points: <see cref="Sweep"/>, naming the pass (<see cref="Forward"/> or
    /// <see cref="ForwardBackward"/>) when the points hold both.
    /// </summary>
    public static DataFrame ToDataFrame(IReadOnlyList<SweepPoint> points) =>
        Sweep.ToDataFrame(points, ("speedup_vs_sdpa", Sdpa), ("speedup_vs_reference", Reference));
}
