using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Papers.RecycledAttention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class RecycledAttentionTests
{
    /// <summary>Runs the fast form (SelectiveKvCache + policy) token by token; outputs [B, T, Hq, Dv] and the per-step attended counts.</summary>
    static (Tensor Output, long[] Attended) Fast(Tensor q, Tensor k, Tensor v, int topK, int stride, int prefill)
    {
        using var cache = new SelectiveKvCache(new RecycledAttentionPolicy(topK, stride, prefill));
        var outs = new List<Tensor>();
        var attended = new List<long>();
        for (long t = 0; t < q.shape[1]; t++)
        {
            var r = cache.Attend(q.narrow(1, t, 1), k.narrow(1, t, 1), v.narrow(1, t, 1));
            outs.Add(r.Output);
            attended.Add(r.Stats.AttendedTokens[0]);
        }
        return (torch.cat(outs, 1), attended.ToArray());
    }

    /// <summary>A schedule on the shared grid (the grid's H is the KV heads; Hq = Groups·H; its chunk is unused): top-K, stride S, prefill steps.</summary>
    public sealed record Schedule(string Name, int TopK, int Stride, int Prefill, int Groups = 1)
    {
        public override string ToString() => Name;
    }

    public static IEnumerable<object[]> Schedules() => Conformance.ShapesWith(
        new Schedule("GQA ×2, K3 S3 prefill 4", 3, 3, 4, Groups: 2), new Schedule("K2 S2 prefill 1", 2, 2, 1),
        new Schedule("GQA ×3, K4 S5 prefill 1 (the first step alone is full)", 4, 5, 1, Groups: 3));

    /// <summary>
    /// Token-by-token decode through SelectiveKvCache + RecycledAttentionPolicy against RecycledAttentionNaive.Decode
    /// (forward only: decode has no autograd path); float64 1e−13·(1 + max|ref|) (no looser than the old 1e−12 + 1e−10·|ref|
    /// while |ref| ≤ 9), float32 1e−5 against the float64 twin.
    /// </summary>
    [Theory]
    [MemberData(nameof(Schedules))]
    public void FastMatchesNaive(Shape shape, Schedule p) =>
        Conformance.Check(shape, (s, dtype, g) =>
            [
                torch.randn(new long[] { s.B, s.T, s.H * p.Groups, s.D }, generator: g, dtype: float64).to(dtype),
                torch.randn(new long[] { s.B, s.T, s.H, s.D }, generator: g, dtype: float64).to(dtype),
                torch.randn(new long[] { s.B, s.T, s.H, s.Dv }, generator: g, dtype: float64).to(dtype),
            ],
            new Form("naive", x => new FormOutput(RecycledAttentionNaive.Decode(x[0], x[1], x[2], p.TopK, p.Stride, p.Prefill)), Gradients: false),
            [new Form("selective cache", x => new FormOutput(Fast(x[0], x[1], x[2], p.TopK, p.Stride, p.Prefill).Output), Gradients: false)],
            tol64: 1e-13, gradients: false);

    [Fact]
    public void RecycledSetHasSizeMinKNPlusTokensSinceTheFullStep()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(3);
        int n = 20, topK = 4, stride = 5, prefill = 6;
        var (q, k, v) = (torch.randn(1, n, 2, 4), torch.randn(1, n, 2, 4), torch.randn(1, n, 2, 4));
        using var policy = new RecycledAttentionPolicy(topK, stride, prefill);
        long t0 = -1;
        using var cache = new SelectiveKvCache(new ObservingSelector(policy, (t, sel) =>
        {
            if (sel is null) { t0 = t; return; }
            Assert.Equal(Math.Min(topK, t0 + 1) + (t - t0), sel.shape[2]);           // |J| = min(K, t₀+1) + (t − t₀)
            Assert.True(t >= prefill && t - t0 < stride);
            var rows = sel.reshape(-1, sel.shape[2]);
            for (int r = 0; r < rows.shape[0]; r++)
            {
                var idx = rows[r].data<long>().ToArray();
                Assert.Equal(idx.Length, idx.Distinct().Count());                      // unique
                Assert.All(idx, j => Assert.InRange(j, 0, t));                          // in range
                Assert.Equal(Enumerable.Range((int)t0 + 1, (int)(t - t0)).Select(x => (long)x), idx.TakeLast((int)(t - t0)));   // new tokens kept: pitfall (a)
            }
        }));
        for (long t = 0; t < n; t++) cache.Attend(q.narrow(1, t, 1), k.narrow(1, t, 1), v.narrow(1, t, 1));
        int expected = prefill + Enumerable.Range(prefill, n - prefill).Count(t => (t - (prefill - 1)) % stride == 0);   // 0 … 5, then 10, 15
        Assert.Equal(expected, policy.FullSteps);
    }

    /// <summary>Wraps a policy and reports each step's selection (null = full) to a check.</summary>
    sealed class ObservingSelector(RecycledAttentionPolicy inner, Action<long, Tensor?> check) : IKvSelector
    {
        public string Name => inner.Name;
        public Tensor? Select(KvSelectQuery query) { var s = inner.Select(query); check(query.Count - 1, s); return s; }
        public void Observe(Tensor probabilities) => inner.Observe(probabilities);
    }

    static TinyGpt Model(PositionKind positions)
    {
        torch.manual_seed(11);
        return new TinyGpt(new TinyGptConfig(Layers: 2, DModel: 32, Heads: 4, VocabSize: 13, Positions: positions, MaxLength: 64));
    }

    static Tensor Decode(TinyGpt model, Tensor ids, Func<int, IKvSelector>? selector)
    {
        using var noGrad = torch.no_grad();
        using var state = selector is null ? model.NewState(ids.shape[0]) : model.NewSelectiveState(ids.shape[0], selector);
        var steps = new List<Tensor>();
        for (long t = 0; t < ids.shape[1]; t++) steps.Add(model.Step(ids.select(1, t), state));
        return torch.stack(steps, 1);
    }

    [Theory]
    [InlineData(PositionKind.Rope)]
    [InlineData(PositionKind.Alibi)]
    [InlineData(PositionKind.None)]
    public void LargeKOrStrideOneEqualsFullDecode(PositionKind positions)
    {
        using var scope = NewDisposeScope();
        using var model = Model(positions);
        model.eval();
        var ids = torch.randint(0, 13, new long[] { 2, 19 });
        var full = Decode(model, ids, null);
        using (torch.no_grad()) Assert.True(full.allclose(model.call(ids), rtol: 1e-4, atol: 1e-5));
        var bigK = Decode(model, ids, _ => new RecycledAttentionPolicy(topK: 19, stride: 4));   // K ≥ n
        var strideOne = Decode(model, ids, _ => new RecycledAttentionPolicy(topK: 2, stride: 1)); // S = 1
        Assert.True((bigK - full).abs().max().item<float>() < 1e-5f, "K ≥ n must equal full decode");
        Assert.True((strideOne - full).abs().max().item<float>() < 1e-5f, "S = 1 must equal full decode");
        var small = Decode(model, ids, _ => new RecycledAttentionPolicy(topK: 2, stride: 4));
        Assert.True((small - full).abs().max().item<float>() > 1e-4f, "a small K must change the logits (the subset is used)");
    }

    [Fact]
    public void MassAtTheFullStepIsTheTopKSumAndBeatsASinkWindowSet()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(5);
        var probs = torch.softmax(torch.randn(2, 3, 1, 30, dtype: float64) * 3, -1);
        var policy = new RecycledAttentionPolicy(topK: 6, stride: 4);
        using var cache = new SelectiveKvCache(policy);
        var (k, v) = (torch.randn(2, 30, 3, 4, dtype: float64), torch.randn(2, 30, 3, 4, dtype: float64));
        cache.Append(k, v);
        Assert.Null(cache.Select());
        cache.Observe(probs);
        var full = probs.squeeze(2);
        double recovered = AttentionMass.Recovery(full, policy.Recycled!);
        double topSum = full.topk(6, -1).values.sum(-1).mean().item<double>();
        Assert.Equal(topSum, recovered, 12);
        var sinkWindow = torch.cat(new[] { torch.arange(2L), torch.arange(26L, 30L) }).expand(2, 3, 6);
        Assert.True(recovered >= AttentionMass.Recovery(full, sinkWindow));
        Assert.Equal(1.0, AttentionMass.Recovery(full, torch.arange(30L).expand(2, 3, 30)), 12);
    }

    [Fact]
    public void StatsReportAttendedTokensAndBytesReadVsHeld()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(2);
        var (q, k, v) = (torch.randn(1, 12, 2, 4), torch.randn(1, 12, 2, 4), torch.randn(1, 12, 2, 4));
        using var cache = new SelectiveKvCache(new RecycledAttentionPolicy(topK: 3, stride: 4, prefill: 8));
        for (long t = 0; t < 12; t++) cache.Attend(q.narrow(1, t, 1), k.narrow(1, t, 1), v.narrow(1, t, 1));
        long perEntry = 1 * 2 * (4 + 4) * 4;
        Assert.Equal(perEntry, cache.BytesPerEntry);
        var recycled = cache.Trace[10];                                               // t = 10: t₀ = 7, J = 3 + 3
        Assert.Equal(6, recycled.AttendedTokens[0]);
        Assert.Equal(6 * perEntry, recycled.KvBytesRead);
        Assert.Equal(11 * perEntry, recycled.KvBytesHeld);                            // nothing is evicted
        Assert.Equal(12, cache.Trace[11].AttendedTokens[0]);                          // t = 11 = t₀ + S: a full step
    }

    [Fact]
    public void BadInputThrowsArgumentExceptionNamingTheArgument()
    {
        Assert.Equal("topK", Assert.Throws<ArgumentException>(() => new RecycledAttentionPolicy(0, 2)).ParamName);
        Assert.Equal("stride", Assert.Throws<ArgumentException>(() => new RecycledAttentionPolicy(2, 0)).ParamName);
        Assert.Equal("prefill", Assert.Throws<ArgumentException>(() => new RecycledAttentionPolicy(2, 2, 0)).ParamName);
        using var scope = NewDisposeScope();
        var x = torch.randn(1, 4, 2, 3);
        Assert.Equal("topK", Assert.Throws<ArgumentException>(() => RecycledAttentionNaive.Decode(x, x, x, 0, 1)).ParamName);
        Assert.Equal("q", Assert.Throws<ArgumentException>(() => RecycledAttentionNaive.Decode(x.narrow(1, 0, 2), x, x, 2, 1)).ParamName);
        var p = torch.rand(1, 2, 5);
        Assert.Equal("subset", Assert.Throws<ArgumentException>(() => AttentionMass.Recovery(p, torch.zeros(1, 2, 2))).ParamName);
        Assert.Equal("subset", Assert.Throws<ArgumentException>(() => AttentionMass.Recovery(p, torch.full(new long[] { 1, 2, 1 }, 5L))).ParamName);
        Assert.Equal("fullProbs", Assert.Throws<ArgumentException>(
            () => AttentionMass.Recovery(torch.rand(2, 5), torch.zeros(1, 2, 1, dtype: int64))).ParamName);
        using var cache = new SelectiveKvCache(new FullSelector());
        Assert.Equal("q", Assert.Throws<ArgumentException>(() =>
            cache.Attend(torch.randn(1, 2, 2, 3), torch.randn(1, 1, 2, 3), torch.randn(1, 1, 2, 3))).ParamName);
    }

    [Fact]
    public void DecodeStepDoesNotLeak()
    {
        using var model = Model(PositionKind.Rope);
        var ids = torch.randint(0, 13, new long[] { 1, 9 });
        LeakCheck.AssertNoLeak(() => { using var s = NewDisposeScope(); Decode(model, ids, _ => new RecycledAttentionPolicy(2, 3)); }, "recycled decode");
        ids.Dispose();
    }
}

public class RecycledDynamicScheduleTests
{
    static (Tensor Output, RecycledAttentionPolicy Policy, SelectiveKvCache Cache) Decode(Tensor q, Tensor k, Tensor v, RecycledAttentionPolicy policy)
    {
        var cache = new SelectiveKvCache(policy);
        var outputs = new List<Tensor>();
        for (int t = 0; t < q.shape[1]; t++) outputs.Add(cache.Attend(q.narrow(1, t, 1), k.narrow(1, t, 1), v.narrow(1, t, 1)).Output);
        return (torch.cat(outputs, 1), policy, cache);
    }

    static (Tensor, Tensor, Tensor) Qkv()
    {
        torch.manual_seed(8);
        return (torch.randn(2, 30, 4, 6, dtype: ScalarType.Float64), torch.randn(2, 30, 2, 6, dtype: ScalarType.Float64),
            torch.randn(2, 30, 2, 6, dtype: ScalarType.Float64));
    }

    [Fact]
    public void TauMinusOneIsTheFixedStrideAndTauOneIsFullAttention()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Qkv();
        var fixedStride = Decode(q, k, v, new RecycledAttentionPolicy(4, 5, prefill: 3));
        var never = Decode(q, k, v, new RecycledAttentionPolicy(4, 5, prefill: 3, tau: -1));        // cos ≥ −1: never drifts
        Assert.True((fixedStride.Output - never.Output).abs().max().item<double>() < 1e-14);
        Assert.Equal(fixedStride.Policy.FullSteps, never.Policy.FullSteps);
        var always = Decode(q, k, v, new RecycledAttentionPolicy(4, int.MaxValue, prefill: 3, tau: 1));   // random queries: cos < 1
        var full = Decode(q, k, v, new RecycledAttentionPolicy(4, 1, prefill: 1));
        Assert.True((always.Output - full.Output).abs().max().item<double>() < 1e-12);
        Assert.Equal(30, always.Policy.FullSteps);
        foreach (var c in new[] { fixedStride.Cache, never.Cache, always.Cache, full.Cache }) c.Dispose();
    }

    [Fact]
    public void FullStepsFollowTheQueryCosine()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Qkv();
        double tau = 0.0;
        var run = Decode(q, k, v, new RecycledAttentionPolicy(4, int.MaxValue, prefill: 3, tau: tau));
        // replay the rule: after the prompt, a step is full iff min_b cos(q̄_t, q̄_{t₀}) < τ
        int full = 3; long anchor = 2;
        for (long t = 3; t < 30; t++)
        {
            var cos = RecycledAttentionPolicy.QueryCosine(q.select(1, t), q.select(1, anchor).mean(new long[] { 1 }));
            if (cos.min().item<double>() < tau) { full++; anchor = t; }
        }
        Assert.Equal(full, run.Policy.FullSteps);
        Assert.InRange(run.Policy.FullSteps, 4, 29);                                 // the rule fires sometimes, not always
        run.Cache.Dispose();
    }

    [Fact]
    public void BadTauIsNamed()
    {
        Assert.Equal("tau", Assert.Throws<ArgumentException>(() => new RecycledAttentionPolicy(4, 2, tau: 1.5)).ParamName);
        Assert.Equal("tau", Assert.Throws<ArgumentException>(() => new RecycledAttentionPolicy(4, 2, tau: double.NaN)).ParamName);
    }
}
