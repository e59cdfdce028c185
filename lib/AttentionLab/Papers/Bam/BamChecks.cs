using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Bam;

/// <summary>The exactness checks of spec §6 and the surgery identities, each returning the gap it measured (float64 unless said).</summary>
public static class BamChecks
{
    /// <summary>
    /// max |Δ| between <see cref="MixtureOfAttention"/> and <see cref="MixtureOfAttentionNaive"/> over the output and the
    /// gradients of x and every parameter (loss = Σ y ⊙ g with a fixed random g).
    /// </summary>
    public static double TwinGap(MixtureOfAttention mixer, Tensor x, Generator gen)
    {
        ArgumentNullException.ThrowIfNull(mixer);
        ArgumentNullException.ThrowIfNull(x);
        using var scope = NewDisposeScope();
        var leaves = new List<Tensor> { x };
        leaves.AddRange(mixer.parameters());
        var fast = mixer.call(x);
        var g = torch.randn(fast.shape, generator: gen, dtype: x.dtype).to(x.device);
        var naive = MixtureOfAttentionNaive.Forward(mixer, x);
        var gFast = Gradients.Of(new[] { (fast * g).sum() }, leaves, allowUnused: true);
        var gNaive = Gradients.Of(new[] { (naive * g).sum() }, leaves, allowUnused: true);
        double worst = (fast - naive).abs().max().item<double>();
        foreach (var (a, b) in gFast.Zip(gNaive)) worst = Math.Max(worst, a.numel() == 0 ? 0 : (a - b).abs().max().item<double>());
        return double.IsNaN(worst) ? double.PositiveInfinity : worst;
    }

    /// <summary>The toy seed of the identity checks: d 12, L 2, H 3, T ≤ 16, parallel blocks, learned positions, float64.</summary>
    public static TinyGptConfig ToyModel => new(Layers: 2, DModel: 12, Heads: 3, MlpRatio: 2, Positions: PositionKind.Learned,
        VocabSize: BamDomains.VocabSize, MaxLength: 16, ParallelBlock: true);

    /// <summary>
    /// Spec §6: the mixture built from N identical copies of a seed gives the seed's logits for any router state (random FFN and
    /// attention routers, not the zero init): max |logits(mix) − logits(seed)|, float64.
    /// </summary>
    public static double IdenticalCopiesGap(MixKind kind, Device device, int seed = 0, int copies = 3, int topK = 2)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(seed);
        using var dense = new TinyGpt(ToyModel);
        dense.to(float64).to(device);
        var branches = Enumerable.Range(0, copies).Select(_ => dense).ToList();
        using var mixed = BamUpcycling.Mix(branches, kind, topK);
        foreach (var moa in BamUpcycling.AttentionMixtures(mixed))
            moa.Router.Weight.weight!.normal_(0, 1, generator: new Generator((ulong)seed + 5));   // any router, not the zero start
        var ids = torch.randint(0, BamDomains.VocabSize, new long[] { 2, 13 }, generator: new Generator((ulong)seed + 1)).to(device);
        double gap = (mixed.call(ids) - dense.call(ids)).abs().max().item<double>();
        return double.IsNaN(gap) ? double.PositiveInfinity : gap;
    }

    /// <summary>Parameter averaging of N identical float32 models is the identity: max |mean − θ| over every parameter (0 = bit-identical).</summary>
    public static double AveragingIdentityGap(Device device, int seed = 0, int copies = 3)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        torch.manual_seed(seed);
        using var dense = new TinyGpt(ToyModel);
        dense.to(device);
        var mean = ParameterAveraging.Average(Enumerable.Range(0, copies).Select(_ => (nn.Module)dense).ToList());
        double worst = 0;
        foreach (var (name, p) in dense.named_parameters())
            worst = Math.Max(worst, (mean[name] - p.detach()).abs().max().item<float>());
        return mean.Count == dense.named_parameters().Count() ? worst : double.PositiveInfinity;
    }

    /// <summary>
    /// Spec §6 gate sums on random tokens: max |Σ_i r_{t,i} − 1| of the soft router, and the number of tokens whose top-k dispatch
    /// mask does not have exactly k ones (plus |Σ kept gates − 1| folded into the first).
    /// </summary>
    public static (double SumGap, long BadRows) GateSums(Device device, int seed = 0, int experts = 3, int topK = 2)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(seed);
        var x = torch.randn(64, 12, dtype: float64).to(device);
        using var soft = new ExpertRouter(12, experts, mode: RouterMode.Soft);
        using var top = new ExpertRouter(12, experts, topK);
        soft.to(float64).to(device);
        top.to(float64).to(device);
        var s = soft.Route(x);
        var t = top.Route(x);
        double gap = Math.Max((s.Gates.sum(1) - 1).abs().max().item<double>(), (t.Gates.sum(1) - 1).abs().max().item<double>());
        long bad = t.Mask().sum(1).ne(topK).sum().item<long>();
        return (gap, bad);
    }

    /// <summary>
    /// KV bytes: BAM-all's decode cache over the dense seed's after the same tokens (spec §6: N × dense), and token-by-token
    /// decoding of the BAM model vs its parallel forward (max |Δ| of logits, float64).
    /// </summary>
    public static (double KvRatio, double StepGap) Decode(Device device, int seed = 0, int copies = 3)
    {
        ArgumentNullException.ThrowIfNull(device);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(seed);
        var branches = Enumerable.Range(0, copies).Select(_ => new TinyGpt(ToyModel)).ToList();   // distinct experts
        foreach (var b in branches) b.to(float64).to(device);
        using var bam = BamUpcycling.Mix(branches, MixKind.Bam, 2);
        foreach (var moa in BamUpcycling.AttentionMixtures(bam))
            moa.Router.Weight.weight!.normal_(0, 1, generator: new Generator((ulong)seed + 7));
        var ids = torch.randint(0, BamDomains.VocabSize, new long[] { 2, 11 }, generator: new Generator((ulong)seed + 3)).to(device);
        var full = bam.call(ids);
        using var bamState = bam.NewState(2);
        using var denseState = branches[0].NewState(2);
        double gap = 0;
        for (int t = 0; t < ids.size(1); t++)
        {
            var step = bam.Step(ids.select(1, t), bamState);
            branches[0].Step(ids.select(1, t), denseState);
            gap = Math.Max(gap, (step - full.select(1, t)).abs().max().item<double>());
        }
        double ratio = bamState.Bytes / (double)denseState.Bytes;
        foreach (var b in branches) b.Dispose();
        return (ratio, double.IsNaN(gap) ? double.PositiveInfinity : gap);
    }
}
