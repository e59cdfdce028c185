using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RoutingTransformer;

/// <summary>
/// Per-head online k-means (Routing Transformer §4.1, official <c>utils.online_kmeans</c>): centroids μ [H, C, D]
/// updated by an exponential moving average, never by gradients. Inputs x are [B, T, H, D].
/// </summary>
/// <remarks>
/// affinity a_tc = x_t·μ_c − ½‖μ_c‖²  (per cluster the ordering over tokens is that of x_t·μ_c; argmax_c is the nearest centroid)
/// n_c = |{t : c(t) = c}|,  S_c = Σ_{c(t)=c} x_t   (summed over the batch)
/// count_c ← λ·count_c + (1−λ)·n_c;  sum_c ← λ·sum_c + (1−λ)·S_c
/// Laplace smoothing (official <c>online_kmeans</c>): N = Σ_c count_c, ĉount_c = (count_c + ε)/(N + C·ε)·N, ε = 1e-5;  μ_c = sum_c / ĉount_c
/// commitment loss = β · mean_{b,t,h,d} (x − sg(μ_{c(t)}))²,  β = 1e-4 — the mean over every element, D included, as the
/// official <c>embedding_lookup</c> (reduce_mean of squared_difference) and lucidrains (F.mse_loss).
/// λ: paper 0.999, official code 0.99, lucidrains 0.999 — exposed as <see cref="Decay"/>.
/// </remarks>
public sealed class OnlineKMeans : nn.Module
{
    const double Epsilon = 1e-5;
    readonly Tensor means, sums, counts;

    /// <param name="heads">H.</param>
    /// <param name="clusters">C (≈ √n in the paper).</param>
    /// <param name="dim">D, the head width.</param>
    /// <param name="decay">λ of the EMA.</param>
    /// <param name="commitment">β of the commitment loss.</param>
    public OnlineKMeans(int heads, int clusters, int dim, double decay = 0.999, double commitment = 1e-4) : base(nameof(OnlineKMeans))
    {
        Guard.Positive(heads, nameof(heads));
        Guard.Positive(clusters, nameof(clusters));
        Guard.Positive(dim, nameof(dim));
        if (!(decay >= 0 && decay < 1)) throw new ArgumentException($"decay must be in [0, 1), got {decay}.", nameof(decay));
        if (!(commitment >= 0)) throw new ArgumentException($"commitment must be ≥ 0, got {commitment}.", nameof(commitment));
        (Heads, Clusters, Dim, Decay, Commitment) = (heads, clusters, dim, decay, commitment);
        means = torch.randn(heads, clusters, dim);
        means = means / (means.norm(-1, keepdim: true) + 1e-6) * Math.Sqrt(dim);   // random unit directions at the LayerNorm radius √D
        sums = means.clone();
        counts = torch.ones(heads, clusters);
        register_buffer(nameof(means), means);
        register_buffer(nameof(sums), sums);
        register_buffer(nameof(counts), counts);
    }

    public int Heads { get; }
    public int Clusters { get; }
    public int Dim { get; }
    /// <summary>λ of the EMA.</summary>
    public double Decay { get; }
    /// <summary>β of the commitment loss.</summary>
    public double Commitment { get; }
    /// <summary>True once <see cref="Initialize"/> has run (a model does it on its first training batch, pitfall (c)).</summary>
    public bool Initialized { get; private set; }
    /// <summary>Centroids μ [H, C, D] (a buffer; read-only use).</summary>
    public Tensor Means => means;
    /// <summary>EMA counts [H, C] (a buffer; read-only use).</summary>
    public Tensor Counts => counts;
    /// <summary>EMA sums [H, C, D] (a buffer; read-only use).</summary>
    public Tensor Sums => sums;
    /// <summary>ε of the Laplace smoothing (official 1e-5).</summary>
    public const double LaplaceEpsilon = Epsilon;

    /// <summary>Affinities [B, H, T, C] and nearest-centroid indices [B, H, T] of x [B, T, H, D].</summary>
    public (Tensor Scores, Tensor Index) Assign(Tensor x)
    {
        Check(x, nameof(x));
        using var scope = NewDisposeScope();
        var mu = means.to(x.dtype, x.device);
        var xh = x.permute(0, 2, 1, 3);                                                   // [B, H, T, D]
        var scores = xh.matmul(mu.transpose(1, 2).unsqueeze(0))                          // x_t·μ_c
                     - 0.5 * mu.pow(2).sum(-1).unsqueeze(0).unsqueeze(2);                 // − ½‖μ_c‖²
        var index = scores.argmax(-1);
        return (scores.MoveToOuterDisposeScope(), index.MoveToOuterDisposeScope());
    }

    /// <summary>One EMA step with x [B, T, H, D] assigned to clusters idx [B, H, T] (no gradient).</summary>
    public void Update(Tensor x, Tensor idx)
    {
        Check(x, nameof(x));
        Guard.Rank(idx, 3, nameof(idx), "B, H, T");
        if (idx.shape[0] != x.shape[0] || idx.shape[1] != Heads || idx.shape[2] != x.shape[1])
            throw new ArgumentException($"idx must be [B, H, T] = [{x.shape[0]}, {Heads}, {x.shape[1]}], got {Guard.ShapeText(idx)}.", nameof(idx));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (n, s) = Statistics(x.detach().to(means.dtype, means.device), idx.to(means.device));
        counts.mul_(Decay).add_(n * (1 - Decay));                                          // count_c ← λ count_c + (1−λ) n_c
        sums.mul_(Decay).add_(s * (1 - Decay));                                            // sum_c ← λ sum_c + (1−λ) S_c
        var total = counts.sum(-1, keepdim: true);                                         // N = Σ_c count_c
        var smoothed = (counts + Epsilon) / (total + Clusters * Epsilon) * total;          // Laplace: (count + ε)/(N + Cε)·N
        means.copy_(sums / smoothed.unsqueeze(-1));                                        // μ_c = sum_c / ĉount_c
    }

    /// <summary>
    /// Data-dependent start (pitfall (c)): μ from <paramref name="iterations"/> Lloyd steps on x [B, T, H, D], starting
    /// from C tokens drawn with <paramref name="seed"/>; the EMA state restarts at count = 1, sum = μ.
    /// </summary>
    public void Initialize(Tensor x, int iterations = 5, int seed = 0)
    {
        Check(x, nameof(x));
        Guard.Positive(iterations, nameof(iterations));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var flat = x.detach().to(means.dtype, means.device).permute(2, 0, 1, 3).reshape(Heads, -1, Dim);   // [H, N, D]
        long count = flat.shape[1];
        var rng = new Random(seed);
        var pick = torch.tensor(Enumerable.Range(0, Clusters).Select(_ => (long)rng.Next((int)count)).ToArray(), device: means.device);
        var mu = flat.index_select(1, pick);                                               // [H, C, D]
        for (int i = 0; i < iterations; i++)
        {
            var idx = (flat.matmul(mu.transpose(1, 2)) - 0.5 * mu.pow(2).sum(-1).unsqueeze(1)).argmax(-1);   // [H, N]
            var (n, s) = Statistics(flat.unsqueeze(0).permute(0, 2, 1, 3), idx.unsqueeze(0));
            mu = torch.where(n.unsqueeze(-1) > 0, s / n.clamp_min(1).unsqueeze(-1), mu);  // empty cluster keeps its centroid
        }
        means.copy_(mu); sums.copy_(mu); counts.fill_(1);
        Initialized = true;
    }

    /// <summary>Sets μ [H, C, D] directly (a demo's chosen start); the EMA state restarts at count = 1, sum = μ.</summary>
    public void SetMeans(Tensor mu)
    {
        Guard.Rank(mu, 3, nameof(mu), "H, C, D");
        if (!mu.shape.SequenceEqual(means.shape)) throw new ArgumentException($"mu must be {Guard.ShapeText(means)}, got {Guard.ShapeText(mu)}.", nameof(mu));
        using var noGrad = torch.no_grad();
        means.copy_(mu); sums.copy_(mu); counts.fill_(1);
        Initialized = true;
    }

    /// <summary>
    /// β · mean over every element of (x − sg(μ_idx))² for x [B, T, H, D], idx [B, H, T] (the references' mean squared
    /// error, not a sum over D): pulls x towards its (fixed) centroid.
    /// </summary>
    public Tensor CommitmentLoss(Tensor x, Tensor idx)
    {
        Check(x, nameof(x));
        using var scope = NewDisposeScope();
        var mu = means.detach().to(x.dtype, x.device);                                     // sg(μ)
        var xh = x.permute(0, 2, 1, 3);                                                    // [B, H, T, D]
        var chosen = mu.unsqueeze(0).expand(x.shape[0], -1, -1, -1)
            .gather(2, idx.unsqueeze(-1).expand(-1, -1, -1, Dim));                        // μ_{c(t)} [B, H, T, D]
        return ((xh - chosen).pow(2).mean() * Commitment).MoveToOuterDisposeScope();         // β · mean (x − sg μ)²
    }

    /// <summary>n_c [H, C] and S_c [H, C, D] summed over the batch.</summary>
    (Tensor N, Tensor S) Statistics(Tensor x, Tensor idx)
    {
        var xh = x.permute(0, 2, 1, 3);                                                    // [B, H, T, D]
        var oneHot = nn.functional.one_hot(idx, Clusters).to(x.dtype);                     // [B, H, T, C]
        return (oneHot.sum(new long[] { 0, 2 }), torch.einsum("bhtc,bhtd->hcd", oneHot, xh));           // n_c, S_c = Σ_{c(t)=c} x_t
    }

    void Check(Tensor x, string name)
    {
        Guard.Rank(x, 4, name, "B, T, H, D");
        Guard.FloatingPoint(x, name);
        Guard.Dim(x, 2, Heads, name, "heads");
        Guard.Dim(x, 3, Dim, name, "head width");
    }
}
