using AttentionLab.Attention;
using AttentionLab.Papers.Aaren;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.GpuCheck;

/// <summary>Sizes of one benchmark case: batch, sequence length, heads, head dim.</summary>
public readonly record struct BenchShape(long Batch, long SeqLen, long Heads, long HeadDim)
{
    public long Tokens => Batch * SeqLen;
}

/// <summary>Inputs of one case, on the benchmark device: q, k, v [B, T, H, D] and Aaren's fixed query [H, D].</summary>
public sealed class BenchInputs : IDisposable
{
    public BenchInputs(BenchShape shape, ScalarType dtype, Device device)
    {
        Shape = shape;
        using var scope = NewDisposeScope();
        Tensor Draw(int seed, params long[] dims) => Correctness.Input(seed, device, dims).to(dtype).DetachFromDisposeScope();
        Q = Draw(1, shape.Batch, shape.SeqLen, shape.Heads, shape.HeadDim);
        K = Draw(2, shape.Batch, shape.SeqLen, shape.Heads, shape.HeadDim);
        V = Draw(3, shape.Batch, shape.SeqLen, shape.Heads, shape.HeadDim);
        Query = Draw(4, shape.Heads, shape.HeadDim);
    }

    public BenchShape Shape { get; }
    public Tensor Q { get; }
    public Tensor K { get; }
    public Tensor V { get; }
    public Tensor Query { get; }

    public void Dispose() { Q.Dispose(); K.Dispose(); V.Dispose(); Query.Dispose(); }
}

/// <summary>
/// One benchmarked method. <see cref="Key"/> names it on the command line of a memory probe; <see cref="WorkspaceBytes"/>
/// estimates its peak extra memory, to skip sizes that cannot fit before trying them.
/// </summary>
public sealed record BenchMethod(string Key, string Name, string Family, ScalarType Dtype, Action<BenchInputs> Run,
    Func<BenchShape, long, double> WorkspaceBytes, bool CudaOnly = false);

/// <summary>
/// The benchmark set, data-driven: every efficient method in the library and its baselines. A new method (a sparse
/// kernel, …) is one more <see cref="BenchMethod"/> in <see cref="Methods"/>.
/// All calls are forward passes without gradients, causal.
/// </summary>
public static class BenchSuite
{
    /// <summary>Full: T = 256 … 16384 at a constant 16384 tokens per call (batch = 16384/T), 8 heads of 64. Quick: a CPU proof.</summary>
    public static IReadOnlyList<long> SeqLens(bool quick) => quick ? new long[] { 64, 128, 256 } : new long[] { 256, 512, 1024, 2048, 4096, 8192, 16384 };

    public static BenchShape Shape(bool quick, long seqLen) => quick
        ? new BenchShape(Math.Max(1, 512 / seqLen), seqLen, 2, 32)
        : new BenchShape(Math.Max(1, 16384 / seqLen), seqLen, 8, 64);

    /// <summary>Lengths whose memory is probed (one fresh process each): one in quick mode, three in full mode (enough for the slope).</summary>
    public static IReadOnlyList<long> MemorySeqLens(bool quick) => quick ? new long[] { 256 } : new long[] { 1024, 4096, 16384 };

    public static IReadOnlyList<BenchMethod> Methods()
    {
        // Reference attention keeps every [B, H, T, T] intermediate of its dispose scope alive: about 7 score-sized tensors.
        static double Quadratic(BenchShape s, long e) => 8.0 * s.Batch * s.Heads * s.SeqLen * s.SeqLen * e + Linear(s, e);
        static double Linear(BenchShape s, long e) => 16.0 * s.Batch * s.SeqLen * s.Heads * (s.HeadDim + 2) * e;
        static double Scan(BenchShape s, long e) => Linear(s, e) * Math.Max(1, Math.Ceiling(Math.Log2(s.SeqLen)));
        var list = new List<BenchMethod>();
        foreach (var (dtype, tag, cudaOnly) in new[] { (ScalarType.Float32, "f32", false), (ScalarType.BFloat16, "bf16", true) })
        {
            list.Add(new BenchMethod($"reference-{tag}", "reference attention (explicit scores)", "softmax baseline", dtype,
                x => { using var r = ReferenceAttention.Softmax(x.Q, x.K, x.V, causal: true); }, Quadratic, cudaOnly));
            list.Add(new BenchMethod($"sdpa-{tag}", "SDPA (libtorch fused)", "softmax baseline", dtype,
                x => SdpaBaseline.Forward(x.Q, x.K, x.V, causal: true), Linear, cudaOnly));
        }
        // The linear-attention engine (identity map, per-head decay): quadratic parallel form, chunked, and the token loop.
        var decayed = new LinearAttentionOptions { ChunkSize = 64 };
        static Tensor LogDecay(BenchInputs x) => -torch.linspace(0.01, 0.5, x.Shape.Heads, dtype: ScalarType.Float32, device: x.Q.device);
        static double Chunked(BenchShape s, long e) => Linear(s, e) + 8.0 * s.Batch * s.Heads * s.SeqLen * 64 * 4;   // [B, H, T, C] float32 scores
        foreach (var (dtype, tag, cudaOnly) in new[] { (ScalarType.Float32, "f32", false), (ScalarType.BFloat16, "bf16", true) })
            list.Add(new BenchMethod($"linear-chunked-{tag}", "linear attention, chunked (C = 64)", "linear attention", dtype,
                x => { using var r = LinearAttention.Chunked(x.Q, x.K, x.V, LogDecay(x), options: decayed); }, Chunked, cudaOnly));
        list.Add(new BenchMethod("linear-parallel-f32", "linear attention, parallel (masked T×T)", "linear attention", ScalarType.Float32,
            x => { using var r = LinearAttention.Parallel(x.Q, x.K, x.V, LogDecay(x), options: decayed); }, Quadratic));
        list.Add(new BenchMethod("linear-recurrent-f32", "linear attention, recurrent (token loop)", "linear attention", ScalarType.Float32,
            x => { using var r = LinearAttention.Recurrent(x.Q, x.K, x.V, LogDecay(x), options: decayed); }, Linear));
        list.Add(new BenchMethod("aaren-naive-f32", "Aaren naive (masked softmax)", "Aaren", ScalarType.Float32,
            x => { using var r = AarenNaive.Attention(x.Query, x.K, x.V); }, Quadratic));
        list.Add(new BenchMethod("aaren-recurrent-f32", "Aaren recurrent (RNN loop)", "Aaren", ScalarType.Float32,
            x => AarenAttention.Recurrent(x.Query, x.K, x.V), Linear));
        list.Add(new BenchMethod("aaren-scan-hs-f32", "Aaren scan (Hillis-Steele)", "Aaren", ScalarType.Float32,
            x => AarenAttention.Scan(x.Query, x.K, x.V, algo: ScanAlgo.HillisSteele), Scan));
        list.Add(new BenchMethod("aaren-scan-blelloch-f32", "Aaren scan (Blelloch)", "Aaren", ScalarType.Float32,
            x => AarenAttention.Scan(x.Query, x.K, x.V, algo: ScanAlgo.Blelloch), Scan));
        return list;
    }

    public static long ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.Float64 => 8,
        ScalarType.Float32 => 4,
        _ => 2,
    };
}
