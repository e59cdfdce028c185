using AttentionLab.Interp;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionCalibration;

/// <summary>
/// The spec's §6 checks on toy patterns: fast vs naive (max |Δ| over a causal prefill [3, 9, 9], decode rows [3, 2, 9] and an
/// encoder [2, 7, 7]); |Σ_j A′_ij − 1|; β = 1 vs the identity; |m′_i − β m_i| (mass on S); the spread of A′_ij / A_ij over j ∉ S
/// per row (ratios kept); the first detected index exempt; inputs without a non-initial sink left as they are.
/// </summary>
public sealed record ActExactness(double NaiveMaxAbs, double RowSumMaxDev, double BetaOneMaxAbs, double SinkMassMaxDev, double RatioSpread,
    bool FirstExempt, bool NoSinkUnchanged, int ToySinks);

/// <summary>
/// The hook on the trained model: an empty head list gives bitwise the baseline logits; with ACT on two heads of layer 0 the
/// pattern at hook_z's input is ACT(baseline pattern) on those heads and the baseline on the others (<see cref="PatternMaxAbs"/>),
/// z_h = A′_h v_h (<see cref="ZMaxAbs"/>), and the logits move (<see cref="LogitsChange"/>).
/// </summary>
public sealed record HookExactness(bool EmptyBitwise, double PatternMaxAbs, double ZMaxAbs, double LogitsChange);

/// <summary>The exactness phase of <see cref="AttentionCalibrationExperiment"/>.</summary>
public static class ActChecks
{
    /// <summary>Toy-tensor checks (seeded), float32 fast form against the float64 naive twin.</summary>
    public static ActExactness Toy(double alpha, double beta, Device device)
    {
        using var scope = NewDisposeScope();
        var gen = new torch.Generator(26);
        var causal = Softmax(torch.randn(new long[] { 3, 9, 9 }, generator: gen), new[] { (0, 3.0), (4, 2.5), (6, 2.0) }, causal: true).to(device);
        var decode = causal.narrow(1, 7, 2);
        var encoder = Softmax(torch.randn(new long[] { 2, 7, 7 }, generator: gen), new[] { (0, 2.0), (3, 2.5) }, causal: false).to(device);
        double naive = new[] { (causal, true), (decode, true), (encoder, false) }.Max(x =>
            MaxAbs(AttentionCalibrationOps.Act(x.Item1, alpha, beta, causal: x.Item2), AttentionCalibrationNaive.Act(x.Item1, alpha, beta, causal: x.Item2)));

        var act = AttentionCalibrationOps.Act(causal, alpha, beta).to(ScalarType.Float64);
        var a = causal.to(ScalarType.Float64);
        double rowSum = (act.sum(-1) - 1).abs().max().item<double>();
        double betaOne = MaxAbs(AttentionCalibrationOps.Act(causal, alpha, 1.0), causal);
        var inS = AttentionCalibrationOps.SinkSet(causal, alpha).unsqueeze(-2).to(ScalarType.Float64);   // [3, 1, 9]
        var rest = (a * (1 - inS)).sum(-1);
        var ok = rest > 0;
        double sinkMass = ((act * inS).sum(-1) - beta * (a * inS).sum(-1)).abs().masked_select(ok).max().item<double>();
        var receivers = (1 - inS).expand_as(a).logical_and(a.gt(0).to(ScalarType.Float64).@bool()).@bool();
        var ratio = torch.where(receivers, act / torch.where(receivers, a, torch.ones_like(a)), torch.full_like(a, double.NaN));
        double spread = (ratio.nan_to_num(double.NegativeInfinity).amax(new long[] { -1 }) - ratio.nan_to_num(double.PositiveInfinity).amin(new long[] { -1 }))
            .masked_select(ok).max().item<double>();

        var all = AttentionCalibrationOps.SinkSet(causal, alpha, dropFirst: false);
        var kept = AttentionCalibrationOps.SinkSet(causal, alpha, dropFirst: true);
        var firstIndex = all.to(ScalarType.Int64).argmax(-1);                            // the first detected index per head
        bool firstExempt = all.any().item<bool>()
            & kept.gather(-1, firstIndex.unsqueeze(-1)).logical_not().all().item<bool>()
            && Count(kept) == Count(all) - Count(all.any(-1));

        var onlyBos = OnlyBos(9).to(device);                                             // causal: only key 0 passes α
        var uniform = torch.full(new long[] { 2, 12, 12 }, 1.0 / 12, device: device);   // encoder: ā_j = 1/12 < α
        bool unchanged = ActChecks.Bitwise(AttentionCalibrationOps.Act(onlyBos, alpha, beta), onlyBos)
            & ActChecks.Bitwise(AttentionCalibrationOps.Act(uniform, alpha, beta, causal: false), uniform);
        return new ActExactness(naive, rowSum, betaOne, sinkMass, spread, firstExempt, unchanged, (int)kept.to(ScalarType.Int64).sum().item<long>());
    }

    /// <summary>Hook checks on <paramref name="model"/> (layer 0, heads 1 and 2 when it has them) for tokens [B, T].</summary>
    public static HookExactness Hooked(IHookedModel model, Tensor tokens, double alpha, double beta, bool causal = true)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var baseLogits = model.Run(tokens);
        Tensor emptyLogits;
        using (ActHook.On(model, Array.Empty<(int, int)>(), alpha, beta)) emptyLogits = model.Run(tokens);
        bool bitwise = ActChecks.Bitwise(baseLogits, emptyLogits);

        var heads = Enumerable.Range(1, Math.Min(2, model.HeadCount - 1)).Select(h => (0, h)).ToArray();
        var names = new[] { "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_v", "blocks.0.attn.hook_z" };
        var (_, baseCache) = model.RunWithCache(tokens, names);
        using var b = baseCache;
        Tensor logits;
        ActivationCache cache;
        using (ActHook.On(model, heads, alpha, beta, causal: causal)) (logits, cache) = model.RunWithCache(tokens, names);   // the cache hook runs after ACT's
        using (cache)
        {
            var basePattern = b["pattern", 0];
            var pattern = cache["pattern", 0];
            double patternErr = 0, zErr = 0;
            for (int h = 0; h < model.HeadCount; h++)
            {
                var expected = heads.Contains((0, h))
                    ? AttentionCalibrationOps.Act(basePattern.select(1, h), alpha, beta, causal: causal)
                    : basePattern.select(1, h);
                patternErr = Math.Max(patternErr, MaxAbs(pattern.select(1, h), expected));
                var z = pattern.select(1, h).matmul(cache["v", 0].select(2, h));         // z_h = A′_h v_h
                zErr = Math.Max(zErr, MaxAbs(cache["z", 0].select(2, h), z));
            }
            double change = (logits - baseLogits).abs().max().item<float>();
            return new HookExactness(bitwise, patternErr, zErr, change);
        }
    }

    static long Count(Tensor mask) => mask.to(ScalarType.Int64).sum().item<long>();

    static Tensor Softmax(Tensor scores, (int Key, double Boost)[] sinks, bool causal)
    {
        var s = scores.clone();
        foreach (var (key, boost) in sinks) s.select(-1, key).add_(boost);
        if (causal) s = s.masked_fill(torch.ones(s.size(-2), s.size(-1)).triu(1).@bool(), double.NegativeInfinity);
        return s.softmax(-1);
    }

    static Tensor OnlyBos(int t)
    {
        var a = torch.zeros(t, t, ScalarType.Float32);
        a[0, 0] = 1;
        for (int i = 1; i < t; i++)
        {
            a[i, 0] = 0.9f;
            a[i].narrow(0, 1, i).fill_(0.1 / i);
        }
        return a.unsqueeze(0);
    }

    /// <summary>Same shape and every entry equal (bitwise for finite values).</summary>
    public static bool Bitwise(Tensor x, Tensor y) => x.shape.SequenceEqual(y.shape) && x.eq(y).all().item<bool>();

    static double MaxAbs(Tensor x, Tensor y) =>
        (x.to(ScalarType.Float64).cpu() - y.to(ScalarType.Float64).cpu()).abs().max().item<double>();
}
