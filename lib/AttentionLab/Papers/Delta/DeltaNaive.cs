using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Delta;

/// <summary>
/// The naive twins of PageScores: the paper's definition written out (explicit weights, loops), float64-capable, never fast.
/// The project's rule: every paper folder keeps its naive twins in a <c>…Naive</c> class of its own file.
/// </summary>
public static class DeltaNaive
{

    /// <summary>The naive twin of <see cref="Delta.PageScores.MaxOverHeads"/>: explicit loops in float64.</summary>
    public static Tensor PageScores(Tensor probs, int pageSize)
    {
        Delta.PageScores.Check(probs, pageSize);
        long b = probs.shape[0], h = probs.shape[1], tq = probs.shape[2], tk = probs.shape[3], pages = (tk + pageSize - 1) / pageSize;
        var a = probs.to(ScalarType.Float64).cpu().contiguous().data<double>().ToArray();
        var s = new double[b * pages];
        for (long bi = 0; bi < b; bi++)
            for (long i = 0; i < tq; i++)
                for (long j = 0; j < tk; j++)
                {
                    double m = double.NegativeInfinity;
                    for (long hi = 0; hi < h; hi++) m = Math.Max(m, a[((bi * h + hi) * tq + i) * tk + j]);
                    s[bi * pages + j / pageSize] += m;
                }
        return torch.tensor(s, new[] { b, pages }, dtype: ScalarType.Float64).to(probs.dtype).to(probs.device);
    }
}
