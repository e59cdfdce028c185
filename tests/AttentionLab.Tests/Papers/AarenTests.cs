using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Papers.Aaren;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class AarenTests
{
    static (Tensor q, Tensor k, Tensor v) Inputs(int b, int t, int h, int d, int dv, ScalarType dtype, bool grad = false, double spread = 1)
    {
        var q = (torch.randn(h, d, dtype: dtype) * spread).requires_grad_(grad);
        var k = (torch.randn(b, t, h, d, dtype: dtype) * spread).requires_grad_(grad);
        var v = torch.randn(b, t, h, dv, dtype: dtype).requires_grad_(grad);
        return (q, k, v);
    }

    static IEnumerable<(string Name, Func<Tensor, Tensor, Tensor, Tensor> Form)> Forms() => new (string, Func<Tensor, Tensor, Tensor, Tensor>)[]
    {
        ("naive", (q, k, v) => { using var r = AarenNaive.Attention(q, k, v); return r.Output.alias(); }),
        ("recurrent", (q, k, v) => { var (o, f) = AarenAttention.Recurrent(q, k, v); f.Dispose(); return o; }),
        ("scan/hillis-steele", (q, k, v) => AarenAttention.Scan(q, k, v, algo: ScanAlgo.HillisSteele)),
        ("scan/blelloch", (q, k, v) => AarenAttention.Scan(q, k, v, algo: ScanAlgo.Blelloch)),
        ("scan/sequential", (q, k, v) => AarenAttention.Scan(q, k, v, algo: ScanAlgo.Sequential)),
    };

    /// <summary>q [H, D] (the learned query), k [B, T, H, D], v [B, T, H, Dv]; scores spread ×2 so the running max matters.</summary>
    static Tensor[] ConformanceInputs(Shape s, ScalarType dtype, Generator g) =>
    [
        (torch.randn(s.H, s.D, generator: g, dtype: float64) * 2).to(dtype),
        (torch.randn(s.B, s.T, s.H, s.D, generator: g, dtype: float64) * 2).to(dtype),
        torch.randn(s.B, s.T, s.H, s.Dv, generator: g, dtype: float64).to(dtype),
    ];

    /// <summary>Every form returns its output and the final log-sum-exp of the scores [B, H] (the scan's m + log u).</summary>
    static readonly Form NaiveForm = new("naive", x =>
    {
        using var r = AarenNaive.Attention(x[0], x[1], x[2]);
        return new FormOutput(r.Output.alias(), r.LogSumExp.select(2, -1).alias());
    });

    static IEnumerable<Form> FastForms() =>
    [
        new("recurrent", x => { var (o, f) = AarenAttention.Recurrent(x[0], x[1], x[2]); return new FormOutput(o, f.M + f.U.log()); }),
        .. new[] { ScanAlgo.HillisSteele, ScanAlgo.Blelloch, ScanAlgo.Sequential }.Select(algo => new Form($"scan/{algo}", x =>
        {
            var states = AarenAttention.ScanStates(x[0], x[1], x[2], algo: algo);
            return new FormOutput(AarenAttention.Scan(x[0], x[1], x[2], algo: algo), SoftmaxMonoid.LogSumExp(states).select(1, -1));
        })),
    ];

    [Theory]
    [MemberData(nameof(Conformance.Shapes), MemberType = typeof(Conformance))]
    public void FormsConformToTheNaiveTwin(Shape shape) =>
        Conformance.Check(shape, ConformanceInputs, NaiveForm, FastForms(), tol32: 1e-5, tol64: 1e-12);

    [Fact]
    public void HugeScoresGiveNoNaNAndMatchFloat64()
    {
        torch.manual_seed(6);
        using var scope = NewDisposeScope();
        var q = torch.randn(2, 4);
        var k = torch.randn(2, 41, 2, 4);
        double scale = 1000 / (q.abs().max() * k.abs().max() * 4).item<float>();   // |s| up to ~1e3
        var v = torch.randn(2, 41, 2, 3);
        using var reference = AarenNaive.Attention(q.to(float64), k.to(float64), v.to(float64), scale);
        Assert.True(AarenAttention.Scores(q, k, scale).abs().max().item<float>() > 200);
        foreach (var algo in Enum.GetValues<ScanAlgo>())
        {
            var o = AarenAttention.Scan(q, k, v, scale, algo);
            Assert.False(o.isnan().any().item<bool>());
            AssertClose.Tensors(o, reference.Output, atol: 2e-5, rtol: 2e-5, what: algo.ToString());
        }
        var (rec, _) = AarenAttention.Recurrent(q, k, v, scale);
        AssertClose.Tensors(rec, reference.Output, atol: 2e-5, rtol: 2e-5, what: "recurrent");
    }

    [Fact]
    public void RecurrentContinuesFromAnEarlierState()
    {
        torch.manual_seed(7);
        using var scope = NewDisposeScope();
        var (q, k, v) = Inputs(2, 9, 2, 3, 4, float64);
        var (whole, _) = AarenAttention.Recurrent(q, k, v);
        var (first, mid) = AarenAttention.Recurrent(q, k.narrow(1, 0, 4), v.narrow(1, 0, 4));
        var (rest, _) = AarenAttention.Recurrent(q, k.narrow(1, 4, 5), v.narrow(1, 4, 5), initial: mid);
        AssertClose.Tensors(torch.cat(new[] { first, rest }, 1), whole, atol: 1e-12, rtol: 1e-12, what: "split run");
    }

    static TinyGptConfig SmallConfig => new(Layers: 2, DModel: 12, Heads: 3, MlpRatio: 2, InputFeatures: 2, OutputFeatures: 5);

    [Fact]
    public void StackStepReproducesForward()
    {
        torch.manual_seed(8);
        using var scope = NewDisposeScope();
        using var model = AarenStack.Create(SmallConfig, ScanAlgo.Blelloch);
        var x = torch.randn(3, 11, 2);
        using var _ = torch.no_grad();
        var full = model.call(x);
        using var state = model.NewState(batch: 3);
        var steps = Enumerable.Range(0, 11).Select(t => model.Step(x.select(1, t), state)).ToArray();
        AssertClose.Tensors(torch.stack(steps, 1), full, atol: 1e-5, rtol: 1e-5, what: "Step vs Forward");
        Assert.Equal(11, state.Position);
    }

    [Fact]
    public void StateSizeDoesNotDependOnT()
    {
        torch.manual_seed(9);
        using var scope = NewDisposeScope();
        using var model = AarenStack.Create(SmallConfig);
        using var state = model.NewState(batch: 2);
        long initial = state.Bytes;
        // per layer: m, u [B, H] and w [B, H, d/H] in float32
        Assert.Equal(SmallConfig.Layers * 2 * SmallConfig.Heads * (2 + SmallConfig.HeadDim) * 4, initial);
        using var _ = torch.no_grad();
        for (int t = 1; t <= 40; t++)
        {
            using var step = NewDisposeScope();
            model.Step(torch.randn(2, 2), state);
            Assert.Equal(initial, state.Bytes);
        }
    }

    [Fact]
    public void LayerForwardUsesTheLearnedQueryOnly()
    {
        // the weights over a prefix do not change when later tokens change (causal) and rows sum to 1
        torch.manual_seed(11);
        using var scope = NewDisposeScope();
        using var layer = new AarenLayer(8, 2);
        var x = torch.randn(1, 6, 8);
        var y = x.clone();
        y[0, 5] = torch.randn(8);
        using var _ = torch.no_grad();
        AssertClose.Tensors(layer.call(y).narrow(1, 0, 5), layer.call(x).narrow(1, 0, 5), atol: 0, rtol: 0, what: "prefix outputs");
        var w = layer.Weights(x);
        Assert.Equal(new long[] { 1, 2, 6, 6 }, w.shape);
        AssertClose.Tensors(w.sum(-1), torch.ones(1, 2, 6), atol: 1e-6, rtol: 0, what: "row sums");
    }

    [Fact]
    public void BadInputsNameTheArgument()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Inputs(2, 5, 2, 3, 4, float32);
        var e1 = Assert.Throws<ArgumentException>(() => AarenAttention.Scan(q, k.flatten(0, 1), v));
        Assert.Equal("k", e1.ParamName);
        Assert.Contains("[10, 2, 3]", e1.Message);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => AarenAttention.Scan(torch.randn(3), k, v)).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => AarenAttention.Scan(torch.randn(2, 4), k, v)).ParamName);
        Assert.Equal("v", Assert.Throws<ArgumentException>(() => AarenAttention.Recurrent(q, k, torch.randn(2, 6, 2, 4))).ParamName);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => AarenNaive.Attention(q, k.to(float64), v)).ParamName);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => AarenAttention.Scores(q.to(int32), k.to(int32))).ParamName);

        using var layer = new AarenLayer(8, 2);
        var e2 = Assert.Throws<ArgumentException>(() => layer.call(torch.randn(1, 4, 6)));
        Assert.Equal("x", e2.ParamName);
        Assert.Contains("[1, 4, 6]", e2.Message);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => layer.call(torch.randn(4, 8))).ParamName);
        using var attention = new CausalSelfAttention(8, 2);
        using var foreign = attention.NewState(1, float32, CPU);
        Assert.Equal("state", Assert.Throws<ArgumentException>(() => layer.Step(torch.randn(1, 8), foreign)).ParamName);
        Assert.Equal("heads", Assert.Throws<ArgumentException>(() => new AarenLayer(8, 3)).ParamName);
    }

    [Fact]
    public void NoTensorsLeakAcrossForwardBackwardAndStep()
    {
        torch.manual_seed(12);
        using var model = AarenStack.Create(SmallConfig, ScanAlgo.Blelloch);
        using var x = torch.randn(2, 7, 2);
        void Round()
        {
            using (var scope = NewDisposeScope())
            {
                model.zero_grad();
                model.call(x).square().mean().backward();
                foreach (var p in model.parameters()) Assert.NotNull(p.grad);
            }
            using (var scope = NewDisposeScope())
            using (torch.no_grad())
            using (var state = model.NewState(2))
                for (int t = 0; t < 7; t++) model.Step(x.select(1, t), state);
            using (var scope = NewDisposeScope())
            {
                var (q, k, v) = Inputs(2, 5, 3, 4, 4, float32, grad: true);
                var o = AarenAttention.Recurrent(q, k, v).Output + AarenAttention.Scan(q, k, v) + AarenNaive.Attention(q, k, v).Output
                        + AarenAttention.Scan(q, k, v, algo: ScanAlgo.Blelloch);
                o.sum().backward();
            }
        }
        Round();                                                    // gradients are allocated on the first round
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 3; i++) Round();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        using (var probe = torch.zeros(1))                          // the counter does see a live tensor
            Assert.Equal(before + 1, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }
}
