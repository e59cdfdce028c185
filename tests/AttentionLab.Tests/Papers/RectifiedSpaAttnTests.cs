using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Papers.RectifiedSpaAttn;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class RectifiedSpaAttnTests
{
    static (Tensor Q, Tensor K, Tensor V) Qkv(int b, int t, int h, int d, int dv, int seed = 3, ScalarType dtype = ScalarType.Float64)
    {
        var gen = new Generator((ulong)seed);
        return (1.5 * torch.randn(new long[] { b, t, h, d }, dtype, generator: gen), 1.5 * torch.randn(new long[] { b, t, h, d }, dtype, generator: gen),
                torch.randn(new long[] { b, t, h, dv }, dtype, generator: gen));
    }

    static double MaxDiff(Tensor a, Tensor b) => (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max().item<double>();

    static double[] Flat(Tensor t) => t.to(ScalarType.Float64).cpu().contiguous().view(-1).data<double>().ToArray();
    static bool[] FlatBool(Tensor t) => t.cpu().contiguous().view(-1).data<bool>().ToArray();
    static double[] Flat<T>(T[,,] a) where T : struct => a.Cast<object>().Select(Convert.ToDouble).ToArray();
    static double[] Flat<T>(T[,,,] a) where T : struct => a.Cast<object>().Select(Convert.ToDouble).ToArray();

    /// <summary>A variant: isolated text tail, τ, minimum top-k, IPAR, compensation, GAPR, neighbour blocks (|i − j| ≤ 1).</summary>
    public sealed record RectifyCase(string Name, int Tail, double Tau, int TopK = 1, bool Ipar = true, bool Compensate = true, bool Gapr = true,
        bool Neighbours = false)
    {
        public override string ToString() => Name;
    }

    public static IEnumerable<object[]> RectifyCases() => Conformance.ShapesWithEach(
        new RectifyCase("τ0.5", 0, 0.5), new RectifyCase("τ0.5 text tail 3", 3, 0.5), new RectifyCase("top-k 2 only (τ0), tail 5", 5, 0.0, TopK: 2),
        new RectifyCase("τ0.7 compensate every dropped block (no GAPR), tail 4", 4, 0.7, Gapr: false),
        new RectifyCase("τ0.6 IPAR scaling only, tail 2", 2, 0.6, Compensate: false), new RectifyCase("τ0.6 plain top-p, tail 2", 2, 0.6, Ipar: false),
        new RectifyCase("τ0.4 + neighbour blocks, tail 3", 3, 0.4, Neighbours: true));

    /// <summary>
    /// The fast form against the float64 loop twin (forward only: the twin is loops over arrays; gradients are checked by
    /// finite differences below): the output and, as final states, R, the compensation weights, the selected and beneficial
    /// blocks (0/1, so any flip fails), the estimated masses and the density. Block = the grid's chunk; q, k ~ 1.5·N(0, 1).
    /// float64 2.5e−13·(1 + max|ref|) (no looser than the old 1e−10 output and 12-digit diagnostics, all ≤ 1);
    /// float32 max |Δ| ≤ 1e−5 (the old float32 bound, absolute) against the float64 twin.
    /// </summary>
    [Theory]
    [MemberData(nameof(RectifyCases))]
    public void FastMatchesNaive(Shape shape, RectifyCase p)
    {
        int tail = Math.Min(p.Tail, shape.T - 1);                                           // the text tail leaves at least one visual token
        int block = shape.Chunk, nb = (shape.T - tail + block - 1) / block;
        bool[,]? nbr = null;
        if (p.Neighbours)
        {
            nbr = new bool[nb, nb];
            for (int i = 0; i < nb; i++) for (int j = 0; j < nb; j++) nbr[i, j] = Math.Abs(i - j) <= 1;
        }
        Tensor[] Inputs(Shape s, ScalarType dtype, Generator g) =>
        [
            (1.5 * torch.randn(new long[] { s.B, s.T, s.H, s.D }, ScalarType.Float64, generator: g)).to(dtype),
            (1.5 * torch.randn(new long[] { s.B, s.T, s.H, s.D }, ScalarType.Float64, generator: g)).to(dtype),
            torch.randn(new long[] { s.B, s.T, s.H, s.Dv }, ScalarType.Float64, generator: g).to(dtype),
        ];
        Tensor Vec(double[] x) => torch.tensor(x, ScalarType.Float64);
        Tensor Vec01(Tensor x) => x.reshape(-1).to(ScalarType.Float64);
        var naive = new Form("naive", x =>
        {
            var n = RectifiedNaive.Forward(x[0], x[1], x[2], block, p.Tau, p.TopK, p.Ipar, p.Gapr, tail, nbr, p.Compensate);
            return new FormOutput(n.Output, Vec(Flat(n.R)), Vec(Flat(n.CompensationWeight)), Vec(Flat(n.Selected)), Vec(Flat(n.Beneficial)),
                Vec(Flat(n.EstimatedMass)), Vec([n.Density]));
        }, Gradients: false);
        var fast = new Form("fast", x =>
        {
            var (o, d) = RectifiedSparseAttention.Forward(x[0], x[1], x[2], block, p.Tau, p.TopK, p.Ipar, p.Gapr, tail, nbr, p.Compensate);
            using (d)
                return new FormOutput(o, Vec01(d.R), Vec01(d.CompensationWeight), Vec01(d.Selected), Vec01(d.Beneficial), Vec01(d.EstimatedMass),
                    Vec([d.Density]));
        }, Gradients: false);
        Conformance.Check(shape, Inputs, naive, [fast], tol64: 2.5e-13, tol32: 0, atol32: 1e-5, gradients: false);
    }

    [Fact]
    public void GradientsMatchFiniteDifferences()
    {
        // The selection is piecewise constant; away from its switching points the rectified output is smooth in q, k, v
        // (R and the compensation depend on q, k through P; GAPR's verdicts are constant there too).
        using var scope = NewDisposeScope();
        var (q0, k0, v0) = Qkv(1, 29, 2, 5, 3, seed: 4);
        var w = torch.randn(new long[] { 1, 29, 2, 3 }, ScalarType.Float64, generator: new Generator(11));
        double Loss(Tensor q, Tensor k, Tensor v)
        {
            var (o, d) = RectifiedSparseAttention.Forward(q, k, v, 8, 0.5, isolatedTail: 3);
            using (d) return (o * w).sum().item<double>();
        }
        var (q, k, v) = (q0.clone().requires_grad_(true), k0.clone().requires_grad_(true), v0.clone().requires_grad_(true));
        var (out0, diag) = RectifiedSparseAttention.Forward(q, k, v, 8, 0.5, isolatedTail: 3);
        diag.Dispose();
        (out0 * w).sum().backward();
        var gen = new Random(0);
        foreach (var (x, g, name) in new[] { (q0, q.grad!, "q"), (k0, k.grad!, "k"), (v0, v.grad!, "v") })
            for (int trial = 0; trial < 6; trial++)
            {
                long idx = gen.Next((int)x.numel());
                double eps = 1e-6;
                var plus = x.clone(); plus.view(-1)[idx] += eps;
                var minus = x.clone(); minus.view(-1)[idx] -= eps;
                double fd = name switch
                {
                    "q" => Loss(plus, k0, v0) - Loss(minus, k0, v0),
                    "k" => Loss(q0, plus, v0) - Loss(q0, minus, v0),
                    _ => Loss(q0, k0, plus) - Loss(q0, k0, minus),
                } / (2 * eps);
                double an = g.view(-1)[idx].item<double>();
                Assert.True(Math.Abs(fd - an) < 1e-6 * Math.Max(1, Math.Abs(fd)), $"d loss / d {name}[{idx}]: autograd {an}, finite difference {fd}");
            }
    }

    [Fact]
    public void Float32MatchesNaiveWithin1e5()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = SyntheticVideoQkv.Generate(2, 8, 8, 16, 2.0, 0.1, 5, seed: 1, heads: 2);
        using var naive = RectifiedNaive.Forward(q, k, v, 16, 0.6, 1, isolatedTail: 5);
        var (o, diag) = RectifiedSparseAttention.Forward(q.to(ScalarType.Float32), k.to(ScalarType.Float32), v.to(ScalarType.Float32), 16, 0.6, 1,
            isolatedTail: 5);
        using (diag) Assert.True(MaxDiff(o, naive.Output) < 1e-5, $"float32 max |Δ| = {MaxDiff(o, naive.Output)}");
    }

    [Theory]
    [InlineData(64, 0, 16)]
    [InlineData(45, 3, 8)]
    [InlineData(1, 2, 4)]
    public void TauOneIsFullAttention(int tv, int tail, int block)
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Qkv(2, tv + tail, 2, 6, 5);
        var (o, diag) = RectifiedSparseAttention.Forward(q, k, v, block, tau: 1.0, isolatedTail: tail);
        using var full = ReferenceAttention.Softmax(q, k, v);
        using (diag)
        {
            Assert.True(MaxDiff(diag.R, torch.ones_like(diag.R)) < 1e-12, "R ≠ 1 at τ = 1");
            Assert.Equal(0.0, diag.CompensationWeight.abs().max().item<double>());
            Assert.False(diag.Compensated.any().item<bool>());
            Assert.Equal(1.0, diag.Density, 12);
            Assert.True(MaxDiff(o, full.Output) < 1e-6, $"τ = 1 vs full attention: {MaxDiff(o, full.Output)}");
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void RPlusCompensationWeightsIsOne(bool gapr)
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = SyntheticVideoQkv.Generate(2, 8, 8, 16, 2.0, 0.1, 7, seed: 2, heads: 2);
        var (o, diag) = RectifiedSparseAttention.Forward(q, k, v, 16, 0.5, gapr: gapr, isolatedTail: 7);
        using (diag)
        {
            var total = diag.R + diag.CompensationWeight;
            Assert.True(MaxDiff(total, torch.ones_like(total)) < 1e-6, $"R + Σ compensation = {total.min().item<double>()} … {total.max().item<double>()}");
            Assert.True(diag.Selected.logical_not().any().item<bool>(), "nothing was dropped: the test would be empty");
            Assert.True(diag.R.min().item<double>() < 1 - 1e-3, "no R below 1");
            // ... and estimated masses sum to 1 per query block (IPAR normalisation)
            var rows = diag.EstimatedMass.sum(-1);
            Assert.True(MaxDiff(rows, torch.ones_like(rows)) < 1e-12);
        }
    }

    [Theory]
    [InlineData(64, 0, 16)]
    [InlineData(45, 3, 8)]    // short last block: IPAR must weight it by n_J, not B
    public void ConstantBlocksMakePoolingExact(int tv, int tail, int block)
    {
        using var scope = NewDisposeScope();
        int h = 2, d = 6, nb = (tv + block - 1) / block;
        var (q0, k0, v) = Qkv(1, nb + tail, h, d, 4, seed: 9);
        var blockOf = torch.tensor(Enumerable.Range(0, tv).Select(t => (long)(t / block)).Concat(Enumerable.Range(nb, tail).Select(t => (long)t)).ToArray());
        var q = q0.index_select(1, blockOf);                                     // q, k constant within each block; text tokens distinct
        var k = k0.index_select(1, blockOf);
        (_, _, v) = Qkv(1, tv + tail, h, d, 4, seed: 10);                       // v arbitrary
        using var full = ReferenceAttention.Softmax(q, k, v);
        var (o, diag) = RectifiedSparseAttention.Forward(q, k, v, block, tau: 0.3, isolatedTail: tail);
        var (plain, pd) = RectifiedSparseAttention.Forward(q, k, v, block, tau: 0.3, ipar: false, isolatedTail: tail);
        using (diag) using (pd)
        {
            Assert.True(diag.Beneficial.all().item<bool>(), "GAPR must call every block beneficial when pooling is exact");
            Assert.True(diag.Selected.logical_not().any().item<bool>(), "nothing dropped");
            Assert.True(MaxDiff(o, full.Output) < 1e-6, $"rectified vs full: {MaxDiff(o, full.Output)}");
            Assert.True(MaxDiff(plain, full.Output) > 1e-2, $"plain sparse is exact too ({MaxDiff(plain, full.Output)}): the test shows nothing");
            // the IPAR estimate is the true block mass here
            var (_, td) = RectifiedSparseAttention.Forward(q, k, v, block, tau: 0.3, isolatedTail: tail, trueMass: true);
            using (td) Assert.True(MaxDiff(td.EstimatedMass, td.TrueMass!) < 1e-10);
        }
    }

    [Fact]
    public void SeedZeroModerateLocalityRectificationBeatsPlainSparse()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = SyntheticVideoQkv.Generate(2, 16, 16, 32, 2.0, 0.1, 16, seed: 0, heads: 2);
        using var full = ReferenceAttention.Softmax(q, k, v);
        var (plain, d1) = RectifiedSparseAttention.Forward(q, k, v, 32, 0.5, ipar: false, isolatedTail: 16);
        var (rect, d2) = RectifiedSparseAttention.Forward(q, k, v, 32, 0.5, gapr: false, isolatedTail: 16);
        using (d1) using (d2)
        {
            Assert.Equal(d1.Density, d2.Density, 12);                            // same critical sets
            double ePlain = RectifiedExperiment.Error(plain, full.Output, 512).RelL2, eRect = RectifiedExperiment.Error(rect, full.Output, 512).RelL2;
            Assert.True(eRect < 0.8 * ePlain, $"R + compensation {eRect:F3} vs plain {ePlain:F3}");
        }
    }

    [Fact]
    public void PlainVariantIsTheBlockSparseKernel()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Qkv(2, 41, 2, 5, 3);
        var (plain, d) = RectifiedSparseAttention.Forward(q, k, v, 8, 0.5, ipar: false, isolatedTail: 4);
        using (d)
        {
            var kernel = RectifiedSparseAttention.BlockSparse(q, k, v, d.Selected, 8, 4);
            Assert.True(MaxDiff(plain, kernel) < 1e-12);
            using var est = RectifiedSparseAttention.Estimate(q, k, 8, 0.5, isolatedTail: 4);
            Assert.True(est.Selected.eq(d.Selected).all().item<bool>());
            Assert.True(MaxDiff(est.EstimatedMass, d.EstimatedMass) < 1e-15);
        }
    }

    [Fact]
    public void PoolingAveragesEachBlockIncludingAShortLastOne()
    {
        using var scope = NewDisposeScope();
        var x = torch.randn(new long[] { 2, 11, 3, 4 }, ScalarType.Float64);
        var p = BlockPooling.Pool(x, 4);
        Assert.Equal(new long[] { 2, 3, 3, 4 }, p.shape);
        Assert.True(MaxDiff(p.select(1, 0), x.narrow(1, 0, 4).mean(new long[] { 1 })) < 1e-14);
        Assert.True(MaxDiff(p.select(1, 2), x.narrow(1, 8, 3).mean(new long[] { 1 })) < 1e-14);
        Assert.Equal(new[] { 4.0, 4.0, 3.0 }, BlockPooling.CountArray(11, 4));
    }

    [Fact]
    public void HilbertOrdersAreLocal()
    {
        foreach (var (t, h, w) in new[] { (1, 8, 8), (4, 4, 4), (2, 16, 16), (3, 5, 6) })
        {
            var order = t == 1 ? TileOrder.Hilbert2D(h, w) : TileOrder.Hilbert3D(t, h, w);
            Assert.Equal(Enumerable.Range(0, t * h * w), order.OrderBy(x => x));              // a permutation
            (int, int, int) At(int r) => (r / (h * w), r / w % h, r % w);
            if ((t, h, w) == (1, 8, 8) || (t, h, w) == (4, 4, 4))                             // a true Hilbert curve: unit steps
                for (int i = 1; i < order.Length; i++)
                {
                    var (a, b) = (At(order[i - 1]), At(order[i]));
                    Assert.Equal(1, Math.Abs(a.Item1 - b.Item1) + Math.Abs(a.Item2 - b.Item2) + Math.Abs(a.Item3 - b.Item3));
                }
        }
        // blocks of 32 on the 2×16×16 smoke grid are 2×4×4 boxes
        var smoke = TileOrder.Hilbert3D(2, 16, 16);
        for (int blk = 0; blk < 16; blk++)
        {
            var pts = smoke.Skip(blk * 32).Take(32).Select(r => (F: r / 256, Y: r / 16 % 16, X: r % 16)).ToArray();
            int vol = (pts.Max(p => p.F) - pts.Min(p => p.F) + 1) * (pts.Max(p => p.Y) - pts.Min(p => p.Y) + 1) * (pts.Max(p => p.X) - pts.Min(p => p.X) + 1);
            Assert.Equal(32, vol);
        }
        var nbr = TileOrder.NeighbourBlocks(smoke, 2, 16, 16, 32);
        for (int i = 0; i < 16; i++)
        {
            Assert.True(nbr[i, i]);
            for (int j = 0; j < 16; j++) Assert.Equal(nbr[i, j], nbr[j, i]);
        }
        Assert.Equal(9, Enumerable.Range(0, 16).Select(i => Enumerable.Range(0, 16).Count(j => nbr[i, j])).Max());   // a 4×4 grid of boxes
    }

    [Fact]
    public void SyntheticQkvIsSeededAndShaped()
    {
        using var scope = NewDisposeScope();
        var (q1, k1, v1) = SyntheticVideoQkv.Generate(2, 4, 4, 8, 2.0, 0.1, 3, seed: 5, heads: 2);
        var (q2, _, _) = SyntheticVideoQkv.Generate(2, 4, 4, 8, 2.0, 0.1, 3, seed: 5, heads: 2);
        var (q3, _, _) = SyntheticVideoQkv.Generate(2, 4, 4, 8, 2.0, 0.1, 3, seed: 6, heads: 2);
        Assert.Equal(new long[] { 1, 35, 2, 8 }, q1.shape);
        Assert.Equal(new long[] { 1, 35, 2, 8 }, v1.shape);
        Assert.True(q1.eq(q2).all().item<bool>());
        Assert.False(q1.eq(q3).all().item<bool>());
        Assert.Equal("locality", Assert.Throws<ArgumentException>(() => SyntheticVideoQkv.Generate(2, 4, 4, 8, -1, 0.1, 3, 0)).ParamName);
    }

    [Fact]
    public void BadInputNamesTheArgument()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Qkv(1, 20, 2, 4, 4);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => RectifiedSparseAttention.Forward(q.reshape(20, 2, 4), k, v, 8)).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => RectifiedSparseAttention.Forward(q, k.narrow(1, 0, 19), v, 8)).ParamName);
        Assert.Equal("v", Assert.Throws<ArgumentException>(() => RectifiedSparseAttention.Forward(q, k, v.narrow(2, 0, 1), 8)).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => RectifiedSparseAttention.Forward(q, k.to(ScalarType.Float32), v, 8)).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => RectifiedSparseAttention.Forward(q, k.narrow(3, 0, 3), v, 8)).ParamName);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() =>
            RectifiedSparseAttention.Forward(q.to(ScalarType.Int64), k.to(ScalarType.Int64), v.to(ScalarType.Int64), 8)).ParamName);
        Assert.Equal("block", Assert.Throws<ArgumentException>(() => RectifiedSparseAttention.Forward(q, k, v, 0)).ParamName);
        Assert.Equal("tau", Assert.Throws<ArgumentException>(() => RectifiedSparseAttention.Forward(q, k, v, 8, tau: -0.1)).ParamName);
        Assert.Equal("minTopK", Assert.Throws<ArgumentException>(() => RectifiedSparseAttention.Forward(q, k, v, 8, minTopK: 0)).ParamName);
        Assert.Equal("isolatedTail", Assert.Throws<ArgumentException>(() => RectifiedSparseAttention.Forward(q, k, v, 8, isolatedTail: 20)).ParamName);
        Assert.Equal("neighbours", Assert.Throws<ArgumentException>(() => RectifiedSparseAttention.Forward(q, k, v, 8, neighbours: new bool[2, 2])).ParamName);
        Assert.Equal("isolatedTail", Assert.Throws<ArgumentException>(() => RectifiedNaive.Forward(q, k, v, 8, isolatedTail: -1)).ParamName);
        Assert.Equal("selected", Assert.Throws<ArgumentException>(
            () => RectifiedSparseAttention.BlockSparse(q, k, v, torch.ones(1, 2, 2, 2, dtype: ScalarType.Bool), 8)).ParamName);
        Assert.Equal("block", Assert.Throws<ArgumentException>(() => BlockPooling.Pool(q, 0)).ParamName);
        Assert.Equal("h", Assert.Throws<ArgumentException>(() => TileOrder.Hilbert3D(2, 0, 4)).ParamName);
        Assert.Equal("order", Assert.Throws<ArgumentException>(() => TileOrder.NeighbourBlocks(new[] { 0, 0 }, 1, 1, 2, 1)).ParamName);
    }

    [Fact]
    public void FormsDoNotLeak()
    {
        var (q, k, v) = Qkv(1, 43, 2, 5, 4);
        LeakCheck.AssertNoLeak(() =>
        {
            var (o, d) = RectifiedSparseAttention.Forward(q, k, v, 8, 0.5, isolatedTail: 3, trueMass: true);
            o.Dispose();
            d.Dispose();
        }, "RectifiedSparseAttention.Forward");
        LeakCheck.AssertNoLeak(() => RectifiedSparseAttention.Estimate(q, k, 8, 0.5, isolatedTail: 3).Dispose(), "RectifiedSparseAttention.Estimate");
        LeakCheck.AssertNoLeak(() => RectifiedNaive.Forward(q, k, v, 8, 0.5, isolatedTail: 3).Dispose(), "RectifiedNaive");
        LeakCheck.AssertNoLeak(() => BlockPooling.Pool(q, 8).Dispose(), "BlockPooling");
        LeakCheck.AssertNoLeak(() => { var (a, b, c) = SyntheticVideoQkv.Generate(1, 4, 4, 4, 2, 0.1, 2, 0); a.Dispose(); b.Dispose(); c.Dispose(); },
            "SyntheticVideoQkv");
    }
}
