using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionCalibration;

/// <summary>The naive twin of <see cref="AttentionCalibrationOps.Act"/>: loops over float64 arrays, one (leading index, row, key) at a time.</summary>
public static class AttentionCalibrationNaive
{
    /// <summary>ACT on a pattern [..., Tq, Tk], written as the spec's §2 reads (float64 result on the CPU).</summary>
    public static Tensor Act(Tensor pattern, double alpha = AttentionCalibrationOps.DefaultAlpha, double beta = AttentionCalibrationOps.DefaultBeta,
        bool dropFirst = true, bool causal = true)
    {
        AttentionCalibrationOps.Check(pattern, alpha, beta);
        long tq = pattern.size(-2), tk = pattern.size(-1), n = pattern.numel() / Math.Max(1, tq * tk);
        var a = pattern.to(ScalarType.Float64).cpu().contiguous().data<double>().ToArray();
        var o = (double[])a.Clone();
        long offset = tk - tq;
        for (long b = 0; b < n; b++)
        {
            long @base = b * tq * tk;
            double At(long i, long j) => a[@base + i * tk + j];
            var inS = new bool[tk];
            bool dropped = !dropFirst;
            for (long j = 0; j < tk; j++)
            {
                double sum = 0;
                long seen = 0;
                for (long i = 0; i < tq; i++)
                {
                    sum += At(i, j);
                    if (!causal || offset + i >= j) seen++;                               // row i (position offset + i) sees key j
                }
                double mean = sum / Math.Max(1, seen);                                    // ā_j
                if (mean > alpha)
                {
                    if (!dropped) { dropped = true; continue; }                            // the first detected index is exempt
                    inS[j] = true;
                }
            }
            for (long i = 0; i < tq; i++)
            {
                double m = 0, r = 0;
                for (long j = 0; j < tk; j++)
                    if (inS[j]) m += At(i, j); else r += At(i, j);
                if (!(r > 0)) continue;                                                   // guard: nothing outside S to receive
                double f = (1 - beta) * m;
                for (long j = 0; j < tk; j++)
                    o[@base + i * tk + j] = inS[j] ? beta * At(i, j) : At(i, j) + f * At(i, j) / r;
            }
            if (causal && tq == tk && tq > 0) o[@base] = 1.0;                              // A′_00 = 1
        }
        return torch.tensor(o, pattern.shape, ScalarType.Float64);
    }
}
