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
        // 1[j ∈ T_a]
        var member = torch.zeros_like(scoresByLayer, dtype: ScalarType.Float64).scatter_(1, top, torch.ones_like(top, dtype: ScalarType.Float64));
        var inter = member.matmul(member.t());                                                  // |T_a ∩ T_b|
        return (inter / (2.0 * k - inter)).MoveToOuterDisposeScope();                           // |∪| = 2k − |∩|
    }

    internal static void Check(Tensor probs, int pageSize)
    {
        Guard.Rank(probs, 4, nameof(probs), "B, H, Tq, Tk");
        Guard.FloatingPoint(probs, nameof(probs));
        Guard.Positive(pageSize, nameof(pageSize));
        if (probs.shape[3] == 0) throw new ArgumentException($"probs must have at least one key, got {Guard.ShapeText(probs)}.", nameof(probs));
    }
}
