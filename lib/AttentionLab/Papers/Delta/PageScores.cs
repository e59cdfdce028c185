using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Delta;

/// <summary>DELTA's page scores ("unified head selection") and the cross-layer overlap that motivates reusing a selection.</summary>
/// <remarks>
/// s_p = Σ_{j∈p} max_h a_{h,j}: the max over query heads comes <b>before</b> the sum over the page's tokens
/// (hoenza/DELTA <c>page_score.py</c>). With several queries the per-query scores are summed.
/// </remarks>
public static class PageScores
{
    /// <summary>Page scores [B, ⌈Tk/P⌉] from attention probabilities [B, H, Tq, Tk]; the partial last page sums what it has.</summary>
    public static Tensor MaxOverHeads(Tensor probs, int pageSize)
    {
        Check(probs, pageSize);
        using var scope = NewDisposeScope();
        long b = probs.shape[0], tk = probs.shape[3], pages = (tk + pageSize - 1) / pageSize;
        var perToken = probs.amax(1).sum(1);                                                     // max_h a_{h,j}, summed over queries → [B, Tk]
        var padded = nn.functional.pad(perToken, new long[] { 0, pages * pageSize - tk });        // zeros fill the last page
        return padded.view(b, pages, pageSize).sum(2).MoveToOuterDisposeScope();                // Σ_{j∈p}
    }

    /// <summary>The naive twin of <see cref="MaxOverHeads"/>: explicit loops in float64.</summary>
    public static Tensor Naive(Tensor probs, int pageSize)
    {
        Check(probs, pageSize);
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

    /// <summary>
    /// Jaccard overlap between the top-<paramref name="k"/> sets of every pair of layers: scores [L, N] (e.g. page scores
    /// per layer at one step) → J [L, L], J_ab = |T_a ∩ T_b| / |T_a ∪ T_b|.
    /// </summary>
    public static Tensor LayerTopKOverlap(Tensor scoresByLayer, int k)
    {
        Guard.Rank(scoresByLayer, 2, nameof(scoresByLayer), "layers, items");
        Guard.FloatingPoint(scoresByLayer, nameof(scoresByLayer));
        if (k < 1 || k > scoresByLayer.shape[1]) throw new ArgumentException($"k must be in [1, {scoresByLayer.shape[1]}], got {k}.", nameof(k));
        using var scope = NewDisposeScope();
        long l = scoresByLayer.shape[0];
        var top = scoresByLayer.topk(k, dim: 1).indexes;
        var member = torch.zeros_like(scoresByLayer, dtype: ScalarType.Float64).scatter_(1, top, torch.ones_like(top, dtype: ScalarType.Float64));   // 1[j ∈ T_a]
        var inter = member.matmul(member.t());                                                  // |T_a ∩ T_b|
        return (inter / (2.0 * k - inter)).MoveToOuterDisposeScope();                           // |∪| = 2k − |∩|
    }

    static void Check(Tensor probs, int pageSize)
    {
        Guard.Rank(probs, 4, nameof(probs), "B, H, Tq, Tk");
        Guard.FloatingPoint(probs, nameof(probs));
        Guard.Positive(pageSize, nameof(pageSize));
        if (probs.shape[3] == 0) throw new ArgumentException($"probs must have at least one key, got {Guard.ShapeText(probs)}.", nameof(probs));
    }
}
