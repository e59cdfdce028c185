using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

/// <summary>
/// Router, load-balance loss and the MoE FFN (issue 13): dispatch/gather against the dense loop over experts on outputs,
/// L_aux and every gradient (router and expert weights included), float64 at 1e-10, over awkward shapes.
/// </summary>
public class MixtureOfExpertsTests
{
    /// <summary>One MoE case: B, T, E experts, d, hidden width, k, router, and a starved expert (a −30 router bias on the last).</summary>
    public sealed record Case(int B, int T, int E, int D, int Hidden, int K, RouterMode Mode, bool Renormalise, bool Starve)
    {
        public override string ToString() => $"B{B} T{T} E{E} d{D} h{Hidden} k{K} {Mode}{(Renormalise ? "" : " raw")}{(Starve ? " starved" : "")}";
        // the kit's shape record carries the case's sizes for its messages: H = E, D = d, Dv = hidden, Chunk = k
        public Shape Shape => new(B, T, E, D, Hidden, K);
    }

    public static TheoryData<Case> Cases() =>
    [
        new(1, 1, 4, 3, 5, 1, RouterMode.TopK, true, false),     // batch 1, T = 1: three experts get no token
        new(1, 1, 4, 3, 5, 2, RouterMode.TopK, false, false),    // T = 1, raw top-2 gates
        new(2, 7, 4, 5, 6, 2, RouterMode.TopK, true, false),
        new(1, 9, 3, 4, 4, 3, RouterMode.TopK, true, false),     // k = E
        new(3, 5, 5, 3, 7, 1, RouterMode.TopK, true, false),     // k = 1 (renormalised: gate 1)
        new(3, 5, 5, 3, 7, 1, RouterMode.TopK, false, false),    // k = 1, Switch's raw gate
        new(2, 13, 6, 5, 3, 2, RouterMode.TopK, true, true),     // the last expert receives zero tokens
        new(2, 6, 3, 4, 5, 1, RouterMode.TopK, false, true),
        new(2, 7, 4, 5, 6, 4, RouterMode.Soft, true, false),     // soft mixture over every expert
        new(1, 3, 1, 2, 3, 1, RouterMode.TopK, true, false),     // one expert
    ];

    // inputs: x [B, T, d], W_r [E, d], b_r [E], W_in [E, h, d], b_in [E, h], W_out [E, d, h], b_out [E, d]
    static Func<Shape, ScalarType, Generator, Tensor[]> Inputs(Case c) => (_, dtype, g) =>
    {
        Tensor R(params long[] shape) => torch.randn(shape, dtype: ScalarType.Float64, generator: g).to(dtype);
        var bias = R(c.E) * 0.1;
        if (c.Starve) bias[c.E - 1] = torch.tensor(-30.0, dtype: dtype);
        return [R(c.B, c.T, c.D), R(c.E, c.D), bias, R(c.E, c.Hidden, c.D) * 0.5, R(c.E, c.Hidden) * 0.1, R(c.E, c.D, c.Hidden) * 0.5, R(c.E, c.D) * 0.1];
    };

    static Func<int, Tensor, Tensor> Experts(Tensor[] t) =>
        (i, xs) => nn.functional.linear(nn.functional.gelu(nn.functional.linear(xs, t[3][i], t[4][i])), t[5][i], t[6][i]);

    static Form Fast(Case c) => new("dispatch/gather", t =>
    {
        var x = t[0].reshape(-1, c.D);
        var routing = ExpertRouter.Select(nn.functional.linear(x, t[1], t[2]), c.K, c.Mode, c.Renormalise);
        var y = MixtureOfExperts.Dispatch(x, routing, Experts(t));
        return new FormOutput(y.reshape(c.B, c.T, c.D), LoadBalanceLoss.Compute(routing));
    });

    static Form Naive(Case c) => new("dense loop", t =>
    {
        var x = t[0].reshape(-1, c.D);
        var logits = nn.functional.linear(x, t[1], t[2]);
        var gates = MixtureOfExpertsNaive.Gates(logits, c.K, c.Mode, c.Renormalise);
        var y = MixtureOfExpertsNaive.Forward(x, gates, Experts(t));
        var mask = c.Mode == RouterMode.Soft ? torch.ones_like(gates) : gates.detach().ne(0).to(gates.dtype);
        return new FormOutput(y.reshape(c.B, c.T, c.D), MixtureOfExpertsNaive.LoadBalance(torch.softmax(logits, -1), mask));
    });

    [Theory]
    [MemberData(nameof(Cases))]
    public void DispatchEqualsTheDenseLoop(Case c) => Conformance.Check(c.Shape, Inputs(c), Naive(c), [Fast(c)]);

    [Fact]
    public void AStarvedExpertGetsNoTokenAndNoGradient()
    {
        using var scope = NewDisposeScope();
        var c = new Case(2, 13, 6, 5, 3, 2, RouterMode.TopK, true, true);
        var t = Inputs(c)(c.Shape, ScalarType.Float64, new Generator(0));
        var win = t[3].requires_grad_(true);
        var x = t[0].reshape(-1, c.D);
        var routing = ExpertRouter.Select(nn.functional.linear(x, t[1], t[2]), c.K);
        Assert.Equal(0.0, routing.Mask().select(1, c.E - 1).sum().item<double>());
        MixtureOfExperts.Dispatch(x, routing, Experts(t)).sum().backward();
        Assert.Equal(0.0, win.grad!.select(0, c.E - 1).abs().max().item<double>());
        Assert.True(win.grad!.select(0, 0).abs().max().item<double>() > 0 || win.grad!.select(0, 1).abs().max().item<double>() > 0);
    }

    [Theory]
    [InlineData(7, 4, 1)]
    [InlineData(7, 4, 3)]
    [InlineData(1, 5, 5)]
    public void TopKKeepsExactlyKExpertsAndGatesSumToOne(int n, int e, int k)
    {
        using var scope = NewDisposeScope();
        var logits = torch.randn(n, e, dtype: ScalarType.Float64, generator: new Generator(3));
        var r = ExpertRouter.Select(logits, k);
        Assert.Equal(new long[] { n, k }, r.Indices.shape);
        AssertClose.Tensors(r.Mask().sum(1), torch.ones(n, dtype: ScalarType.Float64) * k, 0, 0, "experts per token");
        AssertClose.Tensors(r.Gates.sum(1), torch.ones(n, dtype: ScalarType.Float64), 1e-12, 0, "renormalised gates");
        AssertClose.Tensors(r.DenseGates(), MixtureOfExpertsNaive.Gates(logits, k), 1e-12, 0, "dense gates vs the token loop");
        var kept = r.Mask().mul(r.Probabilities).sum(1);                                // the kept p are the k largest
        var topSum = r.Probabilities.sort(1, descending: true).Values.narrow(1, 0, k).sum(1);
        AssertClose.Tensors(kept, topSum, 1e-12, 0, "kept = top-k probabilities");
        var soft = ExpertRouter.Select(logits, 0, RouterMode.Soft);
        AssertClose.Tensors(soft.DenseGates().sum(1), torch.ones(n, dtype: ScalarType.Float64), 1e-12, 0, "soft rows sum to 1");
    }

    [Theory]
    [InlineData(4, 1)]
    [InlineData(4, 2)]
    [InlineData(8, 3)]
    public void LoadBalanceIsKUnderUniformRoutingAndEWhenCollapsed(int e, int k)
    {
        using var scope = NewDisposeScope();
        int n = e * 5;
        var uniform = torch.ones(n, e, dtype: ScalarType.Float64) / e;
        var balanced = torch.zeros(n, e, dtype: ScalarType.Float64);
        for (int t = 0; t < n; t++) for (int j = 0; j < k; j++) balanced[t, (t + j) % e] = torch.tensor(1.0, dtype: ScalarType.Float64);
        Assert.Equal(k, LoadBalanceLoss.Compute(uniform, balanced).item<double>(), 12);
        var collapsed = torch.zeros(n, e, dtype: ScalarType.Float64);
        collapsed.select(1, 0).fill_(1);
        Assert.Equal(e, LoadBalanceLoss.Compute(collapsed, collapsed).item<double>(), 12);
    }

    [Fact]
    public void ModuleForwardEqualsTheFunctionalFormAndRecordsAuxLoss()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(4);
        using var moe = new MixtureOfExperts(dModel: 6, hidden: 8, experts: 4, topK: 2);
        moe.to(ScalarType.Float64);
        var x = torch.randn(2, 5, 6, dtype: ScalarType.Float64);
        var y = moe.call(x);
        var flat = x.reshape(-1, 6);
        var gates = MixtureOfExpertsNaive.Gates(moe.Router.call(flat), 2);
        var expected = MixtureOfExpertsNaive.Forward(flat, gates, (i, xs) => moe.Experts[i].call(xs)).reshape(2, 5, 6);
        AssertClose.Tensors(y, expected, 1e-10, 1e-10, "MoE module vs dense loop");
        var naiveAux = MixtureOfExpertsNaive.LoadBalance(torch.softmax(moe.Router.call(flat), -1), gates.ne(0).to(ScalarType.Float64));
        AssertClose.Tensors(moe.LastAuxLoss!, naiveAux, 1e-12, 0, "L_aux of the last forward");
    }

    [Fact]
    public void NaNInATokenStaysInThatToken()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(5);
        using var moe = new MixtureOfExperts(4, 6, 3, 2);
        var x = torch.randn(1, 3, 4);
        x[0, 1, 2] = torch.tensor(float.NaN);
        var y = moe.call(x);
        Assert.True(y[0, 1].isnan().all().item<bool>());
        Assert.False(y[0, 0].isnan().any().item<bool>() || y[0, 2].isnan().any().item<bool>());
    }

    [Fact]
    public void BadArgumentsThrowNamingThem()
    {
        Assert.Equal("topK", Assert.Throws<ArgumentException>(() => new ExpertRouter(4, 3, topK: 4)).ParamName);
        Assert.Equal("topK", Assert.Throws<ArgumentException>(() => new ExpertRouter(4, 3, topK: 0)).ParamName);
        Assert.Equal("experts", Assert.Throws<ArgumentOutOfRangeException>(() => new ExpertRouter(4, 0)).ParamName);
        using var moe = new MixtureOfExperts(4, 6, 3, 1);
        Assert.Equal("x", Assert.Throws<ArgumentException>(() => moe.Forward(torch.zeros(2, 3, 5))).ParamName);
        Assert.Equal("logits", Assert.Throws<ArgumentException>(() => ExpertRouter.Select(torch.zeros(3), 1)).ParamName);
        Assert.Equal("router", Assert.Throws<ArgumentException>(() => new MixtureOfExperts([new TinyMlp(4, 6)], new ExpertRouter(4, 2))).ParamName);
    }
}
