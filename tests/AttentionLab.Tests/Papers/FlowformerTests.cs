using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Papers.Flowformer;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>Flow-Attention: fast forms vs the naive twin (values, gradients, awkward shapes), the flows' invariants, and bad inputs.</summary>
public class FlowformerTests
{
    static Tensor R(long b, long t, long h, long d, ScalarType dtype = ScalarType.Float64, double spread = 1) =>
        torch.randn(new[] { b, t, h, d }, dtype: dtype) * spread;

    /// <summary>
    /// q [B, n, H, D] × 2, k [B, m, H, D] × 2, v [B, m, H, Dv] with n = T: m = n (causal, or "normal"), m = n + 4 ("normal,
    /// m > n") or m = ⌈n/2⌉ ("normal, m < n": more sinks than sources).
    /// </summary>
    static Func<Shape, ScalarType, Generator, Tensor[]> ConformanceInputs(string variant) => (s, dtype, g) =>
    {
        int m = variant switch { "normal, m > n" => s.T + 4, "normal, m < n" => (s.T + 1) / 2, _ => s.T };
        return
        [
            (torch.randn(s.B, s.T, s.H, s.D, generator: g, dtype: float64) * 2).to(dtype),
            (torch.randn(s.B, m, s.H, s.D, generator: g, dtype: float64) * 2).to(dtype),
            torch.randn(s.B, m, s.H, s.Dv, generator: g, dtype: float64).to(dtype),
        ];
    };

    static Tensor MaterializedTimesV(Tensor q, Tensor k, Tensor v, bool causal) =>
        FlowAttention.Materialize(q, k, causal).matmul(v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3);

    /// <summary>
    /// The causal forms (parallel, recurrent, chunked) and the normal fast form, each with its materialised matrix times V,
    /// against FlowAttentionNaive on outputs and the gradients of q, k, v; the materialised matrix against the twin's
    /// weights. Float64 1e−10; float32 1e−5 against the float64 twin.
    /// </summary>
    [Theory]
    [MemberData(nameof(Conformance.ShapesWith), "causal", "normal", "normal, m > n", "normal, m < n", MemberType = typeof(Conformance))]
    public void FormsConformToTheNaiveTwin(Shape shape, string variant)
    {
        bool causal = variant == "causal";
        var inputs = ConformanceInputs(variant);
        Form Out(string name, Func<Tensor, Tensor, Tensor, Tensor> f) => new(name, x => new FormOutput(f(x[0], x[1], x[2])));
        var forms = causal
            ? new[] { LinearForm.Parallel, LinearForm.Recurrent, LinearForm.Chunked }
                .Select(form => Out($"causal {form}", (q, k, v) => FlowAttention.Attend(q, k, v, causal: true, form: form, chunkSize: shape.Chunk)))
            : [Out("normal", (q, k, v) => FlowAttention.Attend(q, k, v, causal: false))];
        Conformance.Check(shape, inputs, Out("naive", (q, k, v) => FlowAttentionNaive.Attend(q, k, v, causal)),
            forms.Append(Out("materialize·V", (q, k, v) => MaterializedTimesV(q, k, v, causal))), tol32: 1e-5);
        Conformance.Check(shape, inputs, Out("naive weights", (q, k, _) => FlowAttentionNaive.Weights(q, k, causal)),
            [Out("materialize", (q, k, _) => FlowAttention.Materialize(q, k, causal))], tol32: 1e-5);
    }

    [Fact]
    public void FlowsKeepTheirInvariants()
    {
        torch.manual_seed(5);
        using var scope = NewDisposeScope();
        var (q, k) = (R(2, 10, 3, 6, spread: 3), R(2, 14, 3, 6, spread: 3));
        using var w = FlowWeights.Compute(q, k, causal: false);
        AssertClose.Tensors(w.Competition.sum(-1), torch.full(new long[] { 2, 3 }, 14.0, dtype: float64), atol: 1e-10, rtol: 1e-12, what: "Σ_j C_j = m");
        Assert.True(w.Allocation.gt(0).all().item<bool>() && w.Allocation.lt(1).all().item<bool>(), "A ∈ (0, 1)");
        Assert.True(w.ConservedSource.abs().le(1).all().item<bool>(), "Ô clamped to [−1, 1]");
        var rows = w.ScaledQueries().matmul(w.PhiK.transpose(-2, -1)).sum(-1);          // rows of (φQ/I)φKᵀ
        AssertClose.Tensors(rows, torch.ones_like(rows), atol: 1e-4, rtol: 0, what: "rows of (φQ/I)φKᵀ sum to ≈ 1");
        using var c = FlowWeights.Compute(q.narrow(1, 0, 10), k.narrow(1, 0, 10), causal: true);
        var count = torch.arange(1, 11, dtype: float64);
        AssertClose.Tensors((c.ConservedSource.exp() / c.ConservedSource.exp().cumsum(-1)), c.Competition / count, atol: 1e-12, rtol: 1e-12,
            what: "causal competition: C_j/(j+1) = softmax over j′ ≤ j at j's own time");
        Assert.True(c.Allocation.gt(0).all().item<bool>() && c.Allocation.lt(1).all().item<bool>(), "causal A ∈ (0, 1)");
    }

    [Fact]
    public void NormalVariantIsQueryEquivariantAndKeyValueInvariant()
    {
        torch.manual_seed(7);
        using var scope = NewDisposeScope();
        var (q, k, v) = (R(1, 9, 2, 4), R(1, 12, 2, 4), R(1, 12, 2, 3));
        var o = FlowAttention.Attend(q, k, v, causal: false);
        var pq = torch.randperm(9); var pk = torch.randperm(12);
        AssertClose.Tensors(FlowAttention.Attend(q.index_select(1, pq), k, v, causal: false), o.index_select(1, pq), atol: 1e-12, rtol: 1e-10,
            what: "query permutation");
        AssertClose.Tensors(FlowAttention.Attend(q, k.index_select(1, pk), v.index_select(1, pk), causal: false), o, atol: 1e-12, rtol: 1e-10,
            what: "joint (k, v) permutation");
    }

    [Fact]
    public void CausalVariantIgnoresTheFuture()
    {
        torch.manual_seed(9);
        using var scope = NewDisposeScope();
        var (q, k, v) = (R(1, 12, 2, 4), R(1, 12, 2, 4), R(1, 12, 2, 3));
        var o = FlowAttention.Attend(q, k, v, causal: true);
        var (q2, k2, v2) = (q.clone(), k.clone(), v.clone());
        foreach (var x in new[] { q2, k2, v2 }) x.narrow(1, 8, 4).add_(torch.randn(new long[] { 1, 4, 2, x.shape[3] }, dtype: float64) * 3);
        var o2 = FlowAttention.Attend(q2, k2, v2, causal: true);
        AssertClose.Tensors(o2.narrow(1, 0, 8), o.narrow(1, 0, 8), atol: 1e-12, rtol: 1e-12, what: "prefix unchanged");
        Assert.True((o2.narrow(1, 8, 4) - o.narrow(1, 8, 4)).abs().max().item<double>() > 1e-3, "the changed suffix changes the output");
        var w = FlowAttention.Materialize(q, k, causal: true);
        Assert.Equal(0.0, w.triu(1).abs().max().item<double>());
    }

    [Fact]
    public void FlowConcentratesRowsMoreThanPlainLinearAtSeed0()
    {
        var (maps, competition, _) = FlowExperiment.Maps(64, 16, seed: 0);
        double flow = maps.Single(m => m.Mechanism == "flow").MeanRowEntropy, linear = maps.Single(m => m.Mechanism == "linear (σ)").MeanRowEntropy;
        Assert.True(flow < linear, $"flow {flow:F4} vs linear {linear:F4}");
        Assert.True(linear < Math.Log(64) + 1e-12);
        Assert.Equal(64.0, competition.Sum(), 9);
    }

    /// <summary>
    /// One head, written out in scalars as the repo's <c>Flow_Attention.py</c> computes it (reciprocal flows; the causal
    /// form's "normal" = i + 1 multipliers), independent of torch: q [n, D], k [m, D], v [m, Dv] → R [n, Dv].
    /// </summary>
    static double[,] FlowByHand(double[,] q, double[,] k, double[,] v, bool causal, double eps = 1e-6)
    {
        int n = q.GetLength(0), m = k.GetLength(0), d = q.GetLength(1), dv = v.GetLength(1);
        static double Sig(double x) => 1 / (1 + Math.Exp(-x));
        var fq = new double[n, d]; var fk = new double[m, d];
        for (int i = 0; i < n; i++) for (int c = 0; c < d; c++) fq[i, c] = Sig(q[i, c]);
        for (int j = 0; j < m; j++) for (int c = 0; c < d; c++) fk[j, c] = Sig(k[j, c]);
        int Last(int i, int count) => causal ? i : count - 1;                      // the sources sink i sees (sinks source j is seen by)
        double Normal(int i) => causal ? i + 1 : 1;
        // sink_incoming = 1 / ((φq_i+ε)·(Σ φk + ε)) · normal;  source_outgoing likewise
        var sinkIn = new double[n]; var sourceOut = new double[m];
        for (int i = 0; i < n; i++) { double dot = 0; for (int c = 0; c < d; c++) { double sum = 0; for (int j = 0; j <= Last(i, m); j++) sum += fk[j, c];
            dot += (fq[i, c] + eps) * (sum + eps); } sinkIn[i] = Normal(i) / dot; }
        for (int j = 0; j < m; j++) { double dot = 0; for (int c = 0; c < d; c++) { double sum = 0; for (int i = 0; i <= Last(j, n); i++) sum += fq[i, c];
            dot += (fk[j, c] + eps) * (sum + eps); } sourceOut[j] = Normal(j) / dot; }
        // conserved_sink = (φq_i+ε)·(Σ φk_j·source_outgoing_j + ε) / normal;  conserved_source likewise, clamped to [−1, 1]
        var conservedSink = new double[n]; var conservedSource = new double[m];
        for (int i = 0; i < n; i++) { double dot = 0; for (int c = 0; c < d; c++) { double sum = 0;
            for (int j = 0; j <= Last(i, m); j++) sum += fk[j, c] * sourceOut[j]; dot += (fq[i, c] + eps) * (sum + eps); } conservedSink[i] = dot / Normal(i); }
        for (int j = 0; j < m; j++) { double dot = 0; for (int c = 0; c < d; c++) { double sum = 0;
            for (int i = 0; i <= Last(j, n); i++) sum += fq[i, c] * sinkIn[i]; dot += (fk[j, c] + eps) * (sum + eps); }
            conservedSource[j] = Math.Clamp(dot / Normal(j), -1, 1); }
        // allocation = σ(conserved_sink · n/m) (causal: no n/m);  competition = softmax · m (causal: e^{Ô_j}/Σ_{j′≤j} e^{Ô_j′} · (j+1))
        var allocation = new double[n]; var competition = new double[m];
        for (int i = 0; i < n; i++) allocation[i] = Sig(causal ? conservedSink[i] : conservedSink[i] * n / m);
        for (int j = 0; j < m; j++) { double total = 0; for (int j2 = 0; j2 <= Last(j, m); j2++) total += Math.Exp(conservedSource[j2]);
            competition[j] = Math.Exp(conservedSource[j]) / total * (causal ? j + 1 : m); }
        // R_i = A_i · Σ_j (φq_i · sink_incoming_i / normal_i)·φk_j · (C_j v_j)
        var r = new double[n, dv];
        for (int i = 0; i < n; i++)
            for (int j = 0; j <= Last(i, m); j++)
            {
                double w = 0;
                for (int c = 0; c < d; c++) w += fq[i, c] * sinkIn[i] / Normal(i) * fk[j, c];
                for (int e = 0; e < dv; e++) r[i, e] += allocation[i] * w * competition[j] * v[j, e];
            }
        return r;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TinyCaseMatchesThePapersEquationsComputedByHand(bool causal)
    {
        // n = 3 sinks, m = 3 (causal) or 4 sources, D = 2, Dv = 2; entries up to ±3 so σ is far from ½ and the clamp can act
        var q = new double[,] { { 0.5, -1.0 }, { 2.0, 0.0 }, { -3.0, 1.5 } };
        var k = causal ? new double[,] { { 1.0, 0.0 }, { -0.5, 0.3 }, { 0.0, 2.0 } }
            : new double[,] { { 1.0, 0.0 }, { -0.5, 0.3 }, { 0.0, 2.0 }, { 3.0, -2.0 } };
        var v = causal ? new double[,] { { 1.0, 0.5 }, { -2.0, 1.0 }, { 3.0, -1.0 } }
            : new double[,] { { 1.0, 0.5 }, { -2.0, 1.0 }, { 3.0, -1.0 }, { 0.25, 2.0 } };
        var expected = FlowByHand(q, k, v, causal);
        using var scope = NewDisposeScope();
        Tensor T(double[,] x) => torch.tensor(x.Cast<double>().ToArray(), new long[] { 1, x.GetLength(0), 1, x.GetLength(1) }, dtype: float64);
        var fast = FlowAttention.Attend(T(q), T(k), T(v), causal);
        var naive = FlowAttentionNaive.Attend(T(q), T(k), T(v), causal);
        for (int i = 0; i < expected.GetLength(0); i++)
            for (int e = 0; e < expected.GetLength(1); e++)
            {
                Assert.Equal(expected[i, e], fast[0, i, 0, e].item<double>(), 12);
                Assert.Equal(expected[i, e], naive[0, i, 0, e].item<double>(), 12);
            }
        Assert.True(expected.Cast<double>().Any(x => Math.Abs(x) > 0.1), "the case is not degenerate");
    }

    [Fact]
    public void ModuleProjectsAttendsAndDoesNotLeak()
    {
        torch.manual_seed(11);
        foreach (bool causal in new[] { false, true })
        {
            using var attn = new FlowAttention(12, 3, causal);
            attn.eval();
            using var scope = NewDisposeScope();
            var x = torch.randn(2, 7, 12);
            var y = attn.call(x, x, x);
            Assert.Equal(new long[] { 2, 7, 12 }, y.shape);
            // y = W_o R + b_o with R the naive twin's flow attention of the module's own projections (float64)
            var (q, k, v) = attn.Project(x, x, x);
            var byHand = FlowAttentionNaive.Attend(q.to(float64), k.to(float64), v.to(float64), causal);
            var p = attn.named_parameters().ToDictionary(n => n.name, n => n.parameter);
            var expected = nn.functional.linear(byHand.reshape(2, 7, 12), p["out_projection.weight"].to(float64), p["out_projection.bias"].to(float64));
            AssertClose.Tensors(y.to(float64), expected, atol: 1e-5, rtol: 1e-4, what: $"module (causal={causal}) vs W_o·naive + b_o");
            LeakCheck.AssertNoLeak(() => attn.call(x, x, x).Dispose(), $"FlowAttention causal={causal}");
        }
        using var cross = new FlowAttention(8, 2, causal: false);
        using (var s = NewDisposeScope()) Assert.Equal(new long[] { 1, 3, 8 },
            cross.call(torch.randn(1, 3, 8), torch.randn(1, 5, 8), torch.randn(1, 5, 8)).shape);
        using var mixer = new FlowSelfAttention(8, 2);
        using var lin = new SigmoidLinearAttention(8, 2);
        using (var s = NewDisposeScope())
        {
            var x = torch.randn(1, 6, 8);
            Assert.Equal(x.shape, mixer.call(x).shape);
            Assert.Equal(x.shape, lin.call(x).shape);
        }
    }

    [Fact]
    public void BadInputsNameTheArgument()
    {
        using var scope = NewDisposeScope();
        var q = torch.randn(1, 5, 2, 4);
        void Throws(string name, Action a) => Assert.Equal(name, Assert.ThrowsAny<ArgumentException>(a).ParamName);
        Throws("q", () => FlowAttention.Attend(torch.randn(5, 2, 4), q, q, false));
        Throws("k", () => FlowAttention.Attend(q, torch.randn(1, 5, 2, 3), q, false));
        Throws("k", () => FlowAttention.Attend(q, torch.randn(1, 6, 2, 4), torch.randn(1, 6, 2, 4), causal: true));
        Throws("v", () => FlowAttention.Attend(q, q, torch.randn(1, 4, 2, 4), false));
        Throws("k", () => FlowAttention.Attend(q, q.to(float64), q, false));
        Throws("q", () => FlowAttention.Materialize(torch.ones(1, 5, 2, 4, dtype: int64), q, false));
        Throws("eps", () => FlowAttention.Attend(q, q, q, false, eps: 0));
        Throws("k", () => FlowAttentionNaive.Attend(q, torch.randn(2, 5, 2, 4), q, false));
        Throws("heads", () => new FlowAttention(10, 3, false));
        Throws("dModel", () => new FlowAttention(0, 1, false));
        using var attn = new FlowAttention(8, 2, causal: true);
        Throws("queries", () => attn.call(torch.randn(1, 5, 7), torch.randn(1, 5, 8), torch.randn(1, 5, 8)));
        Throws("keys", () => attn.call(torch.randn(1, 5, 8), torch.randn(1, 6, 8), torch.randn(1, 6, 8)));
        Throws("values", () => attn.call(torch.randn(1, 5, 8), torch.randn(1, 5, 8), torch.randn(1, 4, 8)));
    }
}
