using AttentionLab.Attention;
using AttentionLab.Models;
using AttentionLab.Papers.Aaren;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests;

/// <summary>
/// NaN in, NaN out, over the naive and fast forms of the softmax methods (issue 17 §4): one NaN in q, k or v at one
/// position; the outputs that depend on it must be NaN in every form, the others finite, and the forms must agree
/// elementwise on where NaN appears. Fully masked rows give 0 in every form whatever the inputs.
/// </summary>
/// <remarks>
/// Which outputs depend on what (batch b, head h, the NaN at position p):
///   q_p NaN → the row o_p of (b, h), all of it;  k_p NaN → every row that sees key p (causal: i ≥ p), all of it;
///   v_p NaN in value dim 0 → o_i[0] for every row i that sees key p (the other dims stay finite).
/// Every other output must be finite in every form: the dense forms combine values through
/// <see cref="ReferenceAttention.WeightedValues"/>, so a masked key (p_ij = 0) adds nothing even when v_j is NaN, exactly
/// like the forms that skip masked keys (recurrent, scan, split keys).
/// </remarks>
public class NonFiniteConformanceTests
{
    public enum Site { Q, K, V }

    public static IEnumerable<object[]> Cases() =>
        Conformance.Grid.Where(s => s.T <= 33).SelectMany(s => new[] { Site.Q, Site.K, Site.V }.Select(site => new object[] { s, site }));

    static Tensor[] Inputs(Shape s, Site site, long p, bool sharedQuery = false)
    {
        var g = new Generator(7);
        var q = sharedQuery ? torch.randn(s.H, s.D, generator: g, dtype: float64) : torch.randn(s.B, s.T, s.H, s.D, generator: g, dtype: float64);
        var k = torch.randn(s.B, s.T, s.H, s.D, generator: g, dtype: float64);
        var v = torch.randn(s.B, s.T, s.H, s.Dv, generator: g, dtype: float64);
        using (torch.no_grad())
        {
            long h = s.H - 1;
            switch (site)
            {
                case Site.Q when sharedQuery: q[h, 0] = torch.tensor(double.NaN); break;
                case Site.Q: q[0, p, h, 0] = torch.tensor(double.NaN); break;
                case Site.K: k[0, p, h, 0] = torch.tensor(double.NaN); break;
                case Site.V: v[0, p, h, 0] = torch.tensor(double.NaN); break;
            }
        }
        return [q, k, v];
    }

    /// <summary>Where NaN must appear ([B, T, H, Dv] bool); everywhere else the output must be finite.</summary>
    static Tensor Expected(Shape s, Site site, long p, bool causal, bool sharedQuery = false)
    {
        var must = torch.zeros(new long[] { s.B, s.T, s.H, s.Dv }, dtype: ScalarType.Bool);
        long h = s.H - 1;
        var rows = torch.arange(s.T);
        var sees = causal ? rows >= p : torch.ones(s.T, dtype: ScalarType.Bool);       // rows that see key p
        using (torch.no_grad())
        {
            switch (site)
            {
                case Site.Q when sharedQuery: must.select(2, h).fill_(true); break;     // the shared query feeds every row of head h
                case Site.Q: must[0, p, h] = torch.tensor(true); break;
                case Site.K: must[0, TensorIndex.Colon, h] = sees.unsqueeze(-1).expand(s.T, s.Dv); break;
                case Site.V: must[0, TensorIndex.Colon, h, 0] = sees; break;
            }
        }
        return must;
    }

    static void CheckForms(Shape s, Site site, long p, bool causal, IReadOnlyList<(string Name, Func<Tensor[], Tensor> Run)> forms, bool sharedQuery = false)
    {
        using var scope = NewDisposeScope();
        var must = Expected(s, site, p, causal, sharedQuery);
        Tensor? first = null;
        string firstName = "";
        foreach (var (name, run) in forms)
        {
            var o = run(Inputs(s, site, p, sharedQuery));
            var nan = o.isnan();
            string where = $"{name} ({s}, NaN in {site} at {p}, causal {causal})";
            Assert.True(nan.masked_select(must).all().item<bool>(), $"{where}: an output that depends on the NaN is not NaN");
            var elsewhere = must.logical_not();
            Assert.True(o.masked_select(elsewhere).isfinite().all().item<bool>(),
                $"{where}: {o.masked_select(elsewhere).isfinite().logical_not().sum().item<long>()} outputs that do not depend on the NaN are not finite");
            if (first is null) { first = nan; firstName = name; continue; }
            Assert.True(nan.eq(first).all().item<bool>(),
                $"{where}: NaN appears at other places than in {firstName}");
        }
    }

    static Tensor Reference(Tensor[] x, bool causal, Tensor? mask = null)
    {
        using var r = ReferenceAttention.Softmax(x[0], x[1], x[2], causal, mask: mask);
        return r.Output.alias();
    }

    /// <summary>Split keys (flash-decoding): two reference calls over keys [0, h) and [h, T) merged by their LSE.</summary>
    static Tensor SplitKeys(Tensor[] x, bool causal)
    {
        long t = x[1].shape[1], half = t / 2;
        var rows = torch.arange(t).unsqueeze(1);
        var parts = new[] { (0L, half), (half, t - half) }.Select(range =>
        {
            var (start, len) = range;
            var cols = torch.arange(start, start + len).unsqueeze(0);
            var keep = causal ? cols <= rows : torch.ones(t, len, dtype: ScalarType.Bool);   // the second part hides every key from rows i < h
            using var r = ReferenceAttention.Softmax(x[0], x[1].narrow(1, start, len), x[2].narrow(1, start, len), mask: keep);
            return (r.Output.alias(), r.LogSumExp.alias());
        }).ToList();
        return LseMerge.Combine(parts).Output;
    }

    /// <summary>The mixer base's default path (scores masked by position, Normalise, Combine), window ≥ T: causal softmax.</summary>
    static Tensor Mixer(Tensor[] x, Shape s)
    {
        using var mixer = new SlidingWindowAttention(s.H, s.H, windowKeys: s.T);
        var pos = torch.arange(s.T);
        return mixer.Attend(x[0], x[1], x[2], pos, pos).Z;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void SoftmaxAttentionFormsAgreeOnNaN(Shape shape, Site site)
    {
        long p = shape.T / 2;
        foreach (bool causal in new[] { true, false })
        {
            var forms = new List<(string, Func<Tensor[], Tensor>)>
            {
                ("reference", x => Reference(x, causal)),
                ("reference, boolean mask", x => Reference(x, false, causal ? AttentionMasks.Causal(shape.T, shape.T) : torch.ones(shape.T, shape.T,
                    dtype: ScalarType.Bool))),
                ("reference, additive mask", x => Reference(x, false,
                    causal ? torch.zeros(shape.T, shape.T, dtype: float64).masked_fill(AttentionMasks.Causal(shape.T, shape.T).logical_not(),
                        double.NegativeInfinity)
                           : torch.zeros(shape.T, shape.T, dtype: float64))),
            };
            if (shape.T >= 2) forms.Add(("split keys + LSE merge", x => SplitKeys(x, causal)));
            if (causal)
            {
                forms.Add(("mixer base (Attend)", x => Mixer(x, shape)));
                forms.Add(("SlidingWindowAttention.Attend", x => SlidingWindowAttention.Attend(x[0], x[1], x[2], shape.T)));
            }
            CheckForms(shape, site, p, causal, forms);
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void AarenFormsAgreeOnNaN(Shape shape, Site site)
    {
        long p = shape.T / 2;
        List<(string, Func<Tensor[], Tensor>)> forms =
        [
            ("Aaren naive", x => { using var r = AarenNaive.Attention(x[0], x[1], x[2]); return r.Output.alias(); }),
            ("Aaren recurrent", x => { var (o, f) = AarenAttention.Recurrent(x[0], x[1], x[2]); f.Dispose(); return o; }),
            .. new[] { ScanAlgo.HillisSteele, ScanAlgo.Blelloch, ScanAlgo.Sequential }
                .Select(algo => ($"Aaren scan/{algo}", (Func<Tensor[], Tensor>)(x => AarenAttention.Scan(x[0], x[1], x[2], algo: algo)))),
        ];
        CheckForms(shape, site, p, causal: true, forms, sharedQuery: true);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void SinkNormalisersKeepNaN(Shape shape, Site site)
    {
        long p = shape.T / 2;
        var forms = new List<(string, Func<Tensor[], Tensor>)>
        {
            ("softmax1", x => { using var r = AttentionVariants.Softmax1(x[0], x[1], x[2], causal: true); return r.Output.alias(); }),
            ("sink logit b = 0", x =>
            {
                using var r = AttentionVariants.SinkLogit(x[0], x[1], x[2], torch.zeros(shape.H, dtype: float64), causal: true);
                return r.Output.alias();
            }),
        };
        CheckForms(shape, site, p, causal: true, forms);
    }

    /// <summary>A row the mask hides entirely gives p = 0, o = 0, LSE = −∞ in every form, even with a NaN in its own q or in k.</summary>
    [Fact]
    public void FullyMaskedRowsGiveZeroInEveryForm()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        var q = torch.randn(1, 4, 2, 3, generator: g, dtype: float64);
        var k = torch.randn(1, 4, 2, 3, generator: g, dtype: float64);
        var v = torch.randn(1, 4, 2, 5, generator: g, dtype: float64);
        using (torch.no_grad()) { q[0, 1, 0, 0] = torch.tensor(double.NaN); k[0, 2, 1, 1] = torch.tensor(double.NaN); }
        var keep = torch.ones(4, 4, dtype: ScalarType.Bool);
        keep[1] = torch.zeros(4, dtype: ScalarType.Bool);                                   // row 1 sees nothing
        keep[3] = torch.tensor(new[] { true, true, false, false });                        // row 3 never sees the NaN key 2
        var additive = torch.zeros(4, 4, dtype: float64).masked_fill(keep.logical_not(), double.NegativeInfinity);
        var sinkNone = torch.full(2, double.NegativeInfinity, dtype: float64);

        var results = new (string Name, AttentionResult R)[]
        {
            ("reference, boolean mask", ReferenceAttention.Softmax(q, k, v, mask: keep)),
            ("reference, additive mask", ReferenceAttention.Softmax(q, k, v, mask: additive)),
            ("sink logit −∞ (plain softmax)", AttentionVariants.SinkLogit(q, k, v, sinkNone, mask: keep)),
        };
        foreach (var (name, r) in results)
        {
            Assert.True(r.Output.select(1, 1).eq(0).all().item<bool>(), $"{name}: the fully masked row is not 0");
            Assert.True(r.Probabilities.select(2, 1).eq(0).all().item<bool>(), $"{name}: the fully masked row's probabilities are not 0");
            Assert.True(r.LogSumExp.select(2, 1).isneginf().all().item<bool>(), $"{name}: the fully masked row's LSE is not −∞");
            Assert.True(r.Output.select(1, 3).isfinite().all().item<bool>(), $"{name}: row 3 does not see the NaN key but is not finite");
            Assert.True(r.Output[0, 0, 1].isnan().all().item<bool>(), $"{name}: row 0 sees the NaN key 2 in head 1 but is not NaN");
            r.Dispose();
        }
        var (p, lse) = ReferenceAttention.Normalize(torch.full(2, 3, double.NegativeInfinity, dtype: float64), torch.tensor(new[] { false, false }));
        Assert.True(p.eq(0).all().item<bool>() && lse.isneginf().all().item<bool>(), "Normalize: rows the mask hides give p = 0, LSE = −∞");
    }

    /// <summary>The case: a NaN in q gave exact zeros (a non-finite LSE was read as a fully masked row).</summary>
    [Fact]
    public void NormalizeNeverTurnsNaNIntoZeros()
    {
        using var scope = NewDisposeScope();
        var s = torch.tensor(new[] { double.NaN, 0.0, 1.0, double.PositiveInfinity, 0.0, 1.0, double.NegativeInfinity, double.NegativeInfinity,
            double.NegativeInfinity },
            new long[] { 3, 3 });
        var (p, lse) = ReferenceAttention.Normalize(s);
        Assert.True(p[0].isnan().all().item<bool>() && lse[0].isnan().item<bool>(), "a NaN score gives a NaN row");
        Assert.False(p[1].isfinite().all().item<bool>(), "a +∞ score does not give a finite row");
        Assert.True(p[2].eq(0).all().item<bool>() && lse[2].isneginf().item<bool>(), "a row of −∞ (the mask) gives 0 and LSE −∞");
        var (p2, _) = ReferenceAttention.Normalize(s, torch.tensor(new[] { true, true, true }));
        Assert.True(p2[2].isnan().all().item<bool>(), "a row the mask shows whose scores are all −∞ (from the inputs) is NaN, not 0");
        Assert.True(AttentionStats.RowEntropy(p.narrow(0, 0, 1)).isnan().all().item<bool>(), "the entropy of a NaN row is NaN");
    }

    /// <summary>
    /// <see cref="ReferenceAttention.WeightedValues"/> against its loop twin o_i[d] = Σ_{j: p_ij ≠ 0} p_ij v_j[d] (scalar
    /// arithmetic): NaN, +∞ and −∞ values at used and at unused (p = 0) keys, a NaN weight, and both infinities in one sum.
    /// </summary>
    [Fact]
    public void WeightedValuesSkipsUnusedKeysExactly()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(11);
        const int tq = 5, tk = 7, dv = 4;
        var p = torch.rand(2, tq, tk, generator: g, dtype: float64);
        var v = torch.randn(2, tk, dv, generator: g, dtype: float64);
        using (torch.no_grad())
        {
            p.masked_fill_(torch.rand(2, tq, tk, generator: g, dtype: float64) < 0.4, 0.0);      // unused keys
            p[1, 4, 2] = torch.tensor(double.NaN);                                               // a NaN weight
            foreach (var (b, j, d, x) in new[] { (0, 1, 0, double.NaN), (0, 3, 1, double.PositiveInfinity), (0, 5, 1, double.NegativeInfinity),
                         (1, 0, 2, double.NegativeInfinity), (1, 6, 3, double.NaN), (0, 2, 3, double.PositiveInfinity) })
                v[b, j, d] = torch.tensor(x);
        }
        var fast = ReferenceAttention.WeightedValues(p, v);
        var pa = p.data<double>().ToArray();
        var va = v.data<double>().ToArray();
        var fa = fast.data<double>().ToArray();
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < tq; i++)
                for (int d = 0; d < dv; d++)
                {
                    double sum = 0;
                    for (int j = 0; j < tk; j++)
                    {
                        double w = pa[(b * tq + i) * tk + j];
                        if (w != 0) sum += w * va[(b * tk + j) * dv + d];                        // NaN ≠ 0, so a NaN weight is used
                    }
                    double got = fa[(b * tq + i) * dv + d];
                    Assert.True(double.IsNaN(sum) ? double.IsNaN(got) : Math.Abs(got - sum) <= 1e-12 || got == sum,
                        $"o[{b}, {i}, {d}]: {got}, loop {sum}");
                }
        Assert.True(fast.isnan().any().item<bool>() && fast.isinf().any().item<bool>() && fast.isfinite().any().item<bool>(),
            "the case mixes NaN, infinite and finite outputs");
        var pf = torch.rand(3, tq, tk, generator: g, dtype: float64);
        var vf = torch.randn(3, tk, dv, generator: g, dtype: float64);
        Assert.True(ReferenceAttention.WeightedValues(pf, vf).eq(pf.matmul(vf)).all().item<bool>(), "finite values: exactly the plain product");
    }
}
