using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Attention;

/// <summary>
/// The associative-memory core (issue 12): the closed-form recurrence and the chunked form against the autograd naive twin
/// (outputs, final A and S, gradients of q, k, v, θ, η, α, δ and the start memory) over the shared grid; the chunked form
/// against the recurrence at chunk 1 and against its own naive chunked twin at every other chunk; state carry-over, the
/// stream, the objectives' identities, recall, bad input, NaN.
/// </summary>
public class AssociativeMemoryTests(ITestOutputHelper log)
{
    /// <summary>One point of Miras's design space: architecture, bias, retention, momentum, forgetting.</summary>
    public sealed record MemoryCase(string Name, MemoryArchitecture Architecture, string Bias, string Retention, bool Momentum, bool Decay,
        MemoryActivation Activation = MemoryActivation.Gelu, bool Residual = false, bool LayerNorm = false)
    {
        public override string ToString() => Name;

        public AssociativeMemoryOptions Options(int chunk) => new()
        {
            Architecture = Architecture, Activation = Activation, Residual = Residual, LayerNorm = LayerNorm, ChunkSize = chunk,
            Bias = Bias switch
            {
                "l2" => AttentionalBias.L2,
                "l3" => AttentionalBias.Lp(3),
                "huber" => AttentionalBias.Huber,
                "dot" => AttentionalBias.DotProduct,
                _ => throw new ArgumentException(Bias),
            },
            Retention = Retention switch
            {
                "decay" => AttentionLab.Attention.Retention.L2Decay,
                "lq4" => AttentionLab.Attention.Retention.LqNormalize(4),
                "kl" => AttentionLab.Attention.Retention.KlSoftmax,
                _ => throw new ArgumentException(Retention),
            },
        };

        public bool Huber => Bias == "huber";
    }

    static readonly MemoryCase[] Cases =
    [
        new("titans-linear", MemoryArchitecture.Linear, "l2", "decay", Momentum: true, Decay: true),
        new("delta-plain", MemoryArchitecture.Linear, "l2", "decay", Momentum: false, Decay: false),
        new("lp3-momentum", MemoryArchitecture.Linear, "l3", "decay", Momentum: true, Decay: true),
        new("yaad-huber", MemoryArchitecture.Linear, "huber", "decay", Momentum: false, Decay: true),
        new("moneta", MemoryArchitecture.Linear, "l3", "lq4", Momentum: false, Decay: true),
        new("memora", MemoryArchitecture.Linear, "l2", "kl", Momentum: true, Decay: true),
        new("dot-product", MemoryArchitecture.Linear, "dot", "decay", Momentum: false, Decay: true),
        new("titans-mlp", MemoryArchitecture.Mlp, "l2", "decay", Momentum: true, Decay: true),
        new("mlp-silu-residual-huber", MemoryArchitecture.Mlp, "huber", "decay", Momentum: false, Decay: true, MemoryActivation.Silu, Residual: true),
        new("mlp-moneta", MemoryArchitecture.Mlp, "l3", "lq4", Momentum: true, Decay: false),
        new("mlp-memora", MemoryArchitecture.Mlp, "l2", "kl", Momentum: false, Decay: true),
        new("miras-mlp-ln-residual-huber", MemoryArchitecture.Mlp, "huber", "decay", Momentum: false, Decay: true, Residual: true, LayerNorm: true),
        new("mlp-ln-momentum", MemoryArchitecture.Mlp, "l2", "decay", Momentum: true, Decay: true, LayerNorm: true),
    ];

    /// <summary>
    /// The grid × the cases, except LayerNorm memories beyond T = 16: their inner loop amplifies rounding (1/σ of a small
    /// output; float64 naive vs fast measured 6e-9 at T = 64 and 1e-3 at T = 100 while every shape up to T = 16 agrees to
    /// 1e-10, float32 to rms 1e-4), so long sequences compare chaos, not the closed form.
    /// </summary>
    public static IEnumerable<object[]> GridCases() =>
        Conformance.ShapesWithEach(Cases).Where(x => !(((MemoryCase)x[1]).LayerNorm && ((Shape)x[0]).T > 16));

    static long ValueDim(Shape s, MemoryCase c) => c.Residual ? s.D : s.Dv;
    static long Hidden(Shape s) => 2 * s.D + 1;

    /// <summary>Keys and queries /√D (unit-ish norm); unscaled for a LayerNorm memory, whose 1/σ grows without bound as its output shrinks.</summary>
    static double KeyScale(Shape s, MemoryCase c) => c.LayerNorm ? 1 : Math.Sqrt(s.D);

    /// <summary>
    /// Inputs: q, k [B, T, H, D] (/√D), v [B, T, H, Dv]; θ = 0.25·σ(n) [B, T, H] (0.1·σ(n) for ℓ3, whose steps grow with |e|²;
    /// 0.05·σ(n) with LayerNorm, whose 1/σ factor otherwise makes the inner loop chaotic: rounding grew to 1e-1 by T = 100);
    /// η = 0.8·σ(n) with momentum (the inner loop stays stable over T = 100); α = σ(n − 2) with
    /// forgetting; δ = 0.5 + U(0, 1) for Huber; then the start memory per head [H, out, in]; then S₀ [B, H, out, in] with momentum.
    /// </summary>
    static Func<Shape, ScalarType, Generator, Tensor[]> Inputs(MemoryCase c) => (s, dtype, g) =>
    {
        Tensor N(params long[] size) => torch.randn(size, generator: g, dtype: float64);
        long dv = ValueDim(s, c), hid = Hidden(s);
        var list = new List<Tensor>
        {
            N(s.B, s.T, s.H, s.D) / KeyScale(s, c), N(s.B, s.T, s.H, s.D) / KeyScale(s, c), N(s.B, s.T, s.H, dv),
            (c.LayerNorm ? 0.05 : c.Bias == "l3" ? 0.1 : 0.25) * N(s.B, s.T, s.H).sigmoid(),
        };
        if (c.Momentum) list.Add(0.8 * N(s.B, s.T, s.H).sigmoid());
        if (c.Decay) list.Add((N(s.B, s.T, s.H) - 2).sigmoid());
        if (c.Huber) list.Add(0.5 + torch.rand(new long[] { s.B, s.T, s.H }, generator: g, dtype: float64));
        long[][] shapes = c.Architecture == MemoryArchitecture.Linear ? [[dv, s.D]] : [[hid, s.D], [dv, hid]];
        foreach (var w in shapes) list.Add(N(s.H, w[0], w[1]) / Math.Sqrt(w[1]));
        if (c.Momentum) foreach (var w in shapes) list.Add(0.1 * N(s.B, s.H, w[0], w[1]));
        return list.Select(x => x.to(dtype)).ToArray();
    };

    /// <summary>The inputs split back into q, k, v, gates and the start state (the per-head memory expanded over the batch).</summary>
    static (Tensor Q, Tensor K, Tensor V, MemoryGates Gates, MemoryState H0) Split(MemoryCase c, Tensor[] x)
    {
        int i = 3;
        var theta = x[i++];
        var eta = c.Momentum ? x[i++] : null;
        var alpha = c.Decay ? x[i++] : null;
        var delta = c.Huber ? x[i++] : null;
        int n = c.Architecture == MemoryArchitecture.Linear ? 1 : 2;
        long b = x[0].shape[0];
        var weights = x.Skip(i).Take(n).Select(w => w.unsqueeze(0).expand(b, -1, -1, -1)).ToArray();
        var momentum = c.Momentum ? x.Skip(i + n).Take(n).ToArray() : null;
        return (x[0], x[1], x[2], new MemoryGates(theta, eta, alpha, delta), new MemoryState(weights, momentum));
    }

    static FormOutput Outputs(AssociativeMemoryResult r) =>
        new(r.Output, [.. r.FinalState.Weights, .. r.FinalState.Momentum ?? []]);

    static Form NaiveForm(MemoryCase c, int chunk) => new($"naive chunk {chunk}", x =>
    {
        var (q, k, v, gates, h0) = Split(c, x);
        return Outputs(AssociativeMemoryNaive.Run(q, k, v, gates, h0, c.Options(chunk), chunk));
    });

    static Form RecurrentForm(MemoryCase c) => new("recurrent", x =>
    {
        var (q, k, v, gates, h0) = Split(c, x);
        return Outputs(AssociativeMemory.Recurrent(q, k, v, gates, h0, c.Options(1)));
    });

    static Form ChunkedForm(MemoryCase c, int chunk) => new($"chunked {chunk}", x =>
    {
        var (q, k, v, gates, h0) = Split(c, x);
        return Outputs(AssociativeMemory.Chunked(q, k, v, gates, h0, c.Options(chunk)));
    });

    const double Tol32 = 1e-4;

    /// <summary>
    /// The exact recurrence: closed-form recurrence and the chunked form at chunk 1 against the autograd token loop —
    /// outputs, final A (and S), gradients of every input (float64 1e-10; float32 against float64, RMS-relative 1e-4).
    /// </summary>
    [Theory]
    [MemberData(nameof(GridCases))]
    public void RecurrenceAndChunkOneEqualTheNaiveRecurrence(Shape shape, MemoryCase c)
    {
        using var scope = NewDisposeScope();
        Conformance.Check(shape, Inputs(c), NaiveForm(c, 1), [RecurrentForm(c), ChunkedForm(c, 1)], tol32: Tol32, rms32: true, gradTol32: 1e-3);
    }

    /// <summary>The chunked form at the grid's chunk (dividing T or not) against its naive chunked twin (gradients at chunk-start memories).</summary>
    [Theory]
    [MemberData(nameof(GridCases))]
    public void ChunkedEqualsItsNaiveChunkedTwin(Shape shape, MemoryCase c)
    {
        using var scope = NewDisposeScope();
        Conformance.Check(shape, Inputs(c), NaiveForm(c, shape.Chunk), [ChunkedForm(c, shape.Chunk)], tol32: Tol32, rms32: true, gradTol32: 1e-3);
    }

    /// <summary>At chunk &gt; 1 the chunked form is an approximation: it differs from the recurrence (so the tests above can tell them apart).</summary>
    [Theory]
    [InlineData("titans-linear")]
    [InlineData("titans-mlp")]
    [InlineData("memora")]
    public void ChunkedDiffersFromTheRecurrenceBeyondChunkOne(string name)
    {
        using var scope = NewDisposeScope();
        var c = Cases.Single(x => x.Name == name);
        var x = Inputs(c)(new Shape(2, 9, 2, 4, 3, 4), float64, new Generator(3));
        var (q, k, v, gates, h0) = Split(c, x);
        var exact = AssociativeMemory.Recurrent(q, k, v, gates, h0, c.Options(1));
        var chunked = AssociativeMemory.Chunked(q, k, v, gates, h0, c.Options(4));
        double gap = (exact.Output - chunked.Output).abs().max().item<double>();
        log.WriteLine($"{name}: max |recurrent − chunked 4| = {gap:E2}");
        Assert.True(gap > 1e-4, $"{name}: chunked 4 equals the recurrence ({gap:E2}): the chunk-start gradients are not in effect");
        AssertClose.Tensors(chunked.Output.narrow(1, 0, 1), exact.Output.narrow(1, 0, 1), 1e-12, 1e-12, "the first token reads M₀ in both");
    }

    /// <summary>Running two pieces with the carried state equals running the whole (recurrence: any split; chunked: a split at a chunk boundary).</summary>
    [Theory]
    [InlineData("titans-linear", false, 5)]
    [InlineData("titans-mlp", false, 6)]
    [InlineData("memora", false, 3)]
    [InlineData("titans-mlp", true, 8)]
    [InlineData("moneta", true, 4)]
    public void TwoPiecesWithTheStateEqualTheWhole(string name, bool chunked, int split)
    {
        using var scope = NewDisposeScope();
        var c = Cases.Single(x => x.Name == name);
        var x = Inputs(c)(new Shape(2, 13, 2, 5, 3, 4), float64, new Generator(5));
        var (q, k, v, gates, h0) = Split(c, x);
        var o = c.Options(4);
        AssociativeMemoryResult Go(Tensor qq, Tensor kk, Tensor vv, MemoryGates g, MemoryState s) =>
            chunked ? AssociativeMemory.Chunked(qq, kk, vv, g, s, o) : AssociativeMemory.Recurrent(qq, kk, vv, g, s, o);
        MemoryGates Part(long start, long len) => new(gates.Theta.narrow(1, start, len), gates.Eta?.narrow(1, start, len), gates.Alpha?.narrow(1, start, len),
            gates.Delta?.narrow(1, start, len));
        long t = q.shape[1];
        var whole = Go(q, k, v, gates, h0);
        var first = Go(q.narrow(1, 0, split), k.narrow(1, 0, split), v.narrow(1, 0, split), Part(0, split), h0);
        var second = Go(q.narrow(1, split, t - split), k.narrow(1, split, t - split), v.narrow(1, split, t - split), Part(split, t - split), first.FinalState);
        AssertClose.Tensors(torch.cat(new[] { first.Output, second.Output }, 1), whole.Output, 1e-12, 1e-10, $"{name}: two pieces vs whole");
        for (int i = 0; i < whole.FinalState.Weights.Length; i++)
            AssertClose.Tensors(second.FinalState.Weights[i], whole.FinalState.Weights[i], 1e-12, 1e-10, $"{name}: A[{i}]");
    }

    /// <summary>The stream, one token at a time, equals the recurrence on outputs and final state; its bytes do not grow.</summary>
    [Theory]
    [InlineData("titans-linear")]
    [InlineData("titans-mlp")]
    [InlineData("memora")]
    [InlineData("mlp-silu-residual-huber")]
    [InlineData("miras-mlp-ln-residual-huber")]
    public void StreamEqualsTheRecurrence(string name)
    {
        using var scope = NewDisposeScope();
        var c = Cases.Single(x => x.Name == name);
        var x = Inputs(c)(new Shape(2, 11, 3, 4, 4, 4), float64, new Generator(7));
        var (q, k, v, gates, h0) = Split(c, x);
        var whole = AssociativeMemory.Recurrent(q, k, v, gates, h0, c.Options(1));
        using var stream = new AssociativeMemoryStream(h0, c.Options(1));
        long bytes = stream.Bytes;
        var ys = new List<Tensor>();
        for (long t = 0; t < q.shape[1]; t++)
            ys.Add(stream.Step(q.select(1, t), k.select(1, t), v.select(1, t), gates.Theta.select(1, t), gates.Eta?.select(1, t), gates.Alpha?.select(1, t),
                gates.Delta?.select(1, t)));
        AssertClose.Tensors(torch.stack(ys, 1), whole.Output, 1e-12, 1e-10, $"{name}: stream vs recurrence");
        for (int i = 0; i < whole.FinalState.Weights.Length; i++)
            AssertClose.Tensors(stream.State.Weights[i], whole.FinalState.Weights[i], 1e-12, 1e-10, $"{name}: stream A[{i}]");
        Assert.Equal(q.shape[1], stream.Position);
        Assert.Equal(bytes, stream.Bytes);
        Assert.False(stream.State.Weights[0].requires_grad);
    }

    /// <summary>
    /// Behaviour: a linear ℓ2 memory written with (k_i, v_i) for 8 orthonormal keys (10 passes, θ = 0.3, no momentum, no
    /// forgetting) then read with q = k_i returns v_i (relative error &lt; 1e-3: each pass shrinks the error by 1 − 2θ = 0.4);
    /// one pass leaves a visible error, and with θ = 0 the read is the empty memory's 0.
    /// </summary>
    [Fact]
    public void LinearMemoryRecallsWhatItWasWrittenOnOrthogonalKeys()
    {
        using var scope = NewDisposeScope();
        const int d = 8, dv = 5, pairs = 8;
        torch.manual_seed(0);
        var basis = torch.linalg.qr(torch.randn(d, d, dtype: float64)).Q;                // orthonormal columns
        var keys = basis.t().narrow(0, 0, pairs);                                         // [pairs, D]
        var values = torch.randn(pairs, dv, dtype: float64);
        double Recall(int passes, double theta)
        {
            var k = keys.repeat(passes, 1).view(1, passes * pairs, 1, d);
            var v = values.repeat(passes, 1).view(1, passes * pairs, 1, dv);
            var gates = new MemoryGates(torch.full(new long[] { 1, passes * pairs, 1 }, theta, dtype: float64));
            var r = AssociativeMemory.Chunked(k, k, v, gates, options: new AssociativeMemoryOptions { ChunkSize = 1 });
            var read = AssociativeMemory.Read(r.FinalState, keys.view(1, pairs, 1, d));
            return ((read.view(pairs, dv) - values).norm() / values.norm()).item<double>();
        }
        double many = Recall(10, 0.3), one = Recall(1, 0.3), none = Recall(10, 0.0);
        log.WriteLine($"relative recall error: 10 passes {many:E2}, 1 pass {one:E2}, θ = 0 {none:E2}");
        Assert.True(many < 1e-3, $"10 passes: relative recall error {many:E2} ≥ 1e-3");
        Assert.True(one > 0.3, $"1 pass: error {one:E2} should still be visible (0.4 expected)");
        Assert.True(Math.Abs(none - 1) < 1e-12, $"θ = 0: the read is 0, error 1, got {none}");
    }

    static (Tensor Q, Tensor K, Tensor V, MemoryGates Gates) Small(int seed)
    {
        var g = new Generator((ulong)seed);
        Tensor N(params long[] s) => torch.randn(s, generator: g, dtype: float64);
        return (N(2, 9, 2, 4) / 2, N(2, 9, 2, 4) / 2, N(2, 9, 2, 3), new MemoryGates(0.4 * N(2, 9, 2).sigmoid(), N(2, 9, 2).sigmoid(),
            (N(2, 9, 2) - 2).sigmoid()));
    }

    /// <summary>ℓp with p = 2 and Huber with δ → ∞ are the ℓ2 bias; ℓq with q = 2 reads W = A.</summary>
    [Fact]
    public void DesignSpaceReducesToTitansAtItsEdges()
    {
        using var scope = NewDisposeScope();
        var (q, k, v, gates) = Small(1);
        var l2 = AssociativeMemory.Recurrent(q, k, v, gates);
        var lp2 = AssociativeMemory.Recurrent(q, k, v, gates, options: new() { Bias = AttentionalBias.Lp(2) });
        AssertClose.Tensors(lp2.Output, l2.Output, 1e-14, 1e-12, "ℓp, p = 2");
        var huber = AssociativeMemory.Recurrent(q, k, v, gates with { Delta = torch.full(gates.Theta.shape, 1e6, dtype: float64) },
            options: new() { Bias = AttentionalBias.Huber });
        AssertClose.Tensors(huber.Output, l2.Output, 1e-14, 1e-12, "Huber, δ → ∞");
        var lq2 = AssociativeMemory.Recurrent(q, k, v, gates, options: new() { Retention = Retention.LqNormalize(2) });
        AssertClose.Tensors(lq2.Output, l2.Output, 1e-14, 1e-12, "ℓq, q = 2");
        // a small δ clips: the Huber run differs from ℓ2
        var clipped = AssociativeMemory.Recurrent(q, k, v, gates with { Delta = torch.full(gates.Theta.shape, 0.05, dtype: float64) },
            options: new() { Bias = AttentionalBias.Huber });
        Assert.True((clipped.Output - l2.Output).abs().max().item<double>() > 1e-3, "δ = 0.05 should clip the updates");
    }

    /// <summary>Memora keeps every W_t on the simplex: rows ≥ 0 summing to 1 (here: after every prefix, through the stream).</summary>
    [Fact]
    public void MemoraWeightsStayOnTheSimplex()
    {
        using var scope = NewDisposeScope();
        var (q, k, v, gates) = Small(2);
        var o = new AssociativeMemoryOptions { Retention = Retention.KlSoftmax };
        using var stream = new AssociativeMemoryStream(MemoryState.FromHeads(2, true, torch.zeros(2, 3, 4, dtype: float64)), o);
        for (long t = 0; t < 9; t++)
        {
            stream.Step(q.select(1, t), k.select(1, t), v.select(1, t), gates.Theta.select(1, t), gates.Eta!.select(1, t), gates.Alpha!.select(1, t));
            var w = Retention.KlSoftmax.Read(stream.State.Weights[0]);
            Assert.True(w.min().item<double>() >= 0, $"t = {t}: a negative weight");
            AssertClose.Tensors(w.sum(-1), torch.ones_like(w.sum(-1)), 1e-12, 0, $"t = {t}: rows sum to 1");
        }
    }

    /// <summary>The dot-product bias without forgetting or momentum is linear attention's Hebbian write: A_T = A₀ + Σ_t 2θ_t v_t k_tᵀ.</summary>
    [Fact]
    public void DotProductBiasIsTheHebbianWrite()
    {
        using var scope = NewDisposeScope();
        var (q, k, v, gates) = Small(3);
        var r = AssociativeMemory.Chunked(q, k, v, new MemoryGates(gates.Theta), options: new() { Bias = AttentionalBias.DotProduct, ChunkSize = 4 });
        var expected = torch.einsum("bth,bthv,bthd->bhvd", 2 * gates.Theta, v, k);
        AssertClose.Tensors(r.FinalState.Weights[0], expected, 1e-12, 1e-12, "Σ 2θ v kᵀ");
    }

    /// <summary>
    /// The naive twin's start memory may be a view made under no_grad of a parameter (a learned start memory expanded in an
    /// inference call): autograd reports such a view as a leaf that requires grad yet routes its gradient to the parameter,
    /// so differentiating at it reached nothing and ended the process. Both runs equal one from a plain copy, and a start
    /// memory that is a genuine leaf still gets its gradient through the updates.
    /// </summary>
    [Fact]
    public void NaiveTwinTakesAStartMemoryViewedFromAParameterUnderNoGrad()
    {
        using var scope = NewDisposeScope();
        var (q, k, v, full) = Small(4);
        var gates = new MemoryGates(full.Theta, null, full.Alpha);
        var options = new AssociativeMemoryOptions { Architecture = MemoryArchitecture.Mlp };
        var g = new Generator(5);
        using var w1 = new TorchSharp.Modules.Parameter(torch.randn(2, 8, 4, dtype: float64, generator: g) / 4);
        using var w2 = new TorchSharp.Modules.Parameter(torch.randn(2, 3, 8, dtype: float64, generator: g) / 4);
        var plain = AssociativeMemoryNaive.Run(q, k, v, gates, MemoryState.FromHeads(2, false, w1.detach(), w2.detach()), options);
        using (torch.no_grad())
        {
            var viewed = AssociativeMemoryNaive.Run(q, k, v, gates, MemoryState.FromHeads(2, false, w1, w2), options);
            AssertClose.Tensors(viewed.Output, plain.Output, 1e-14, 0, "start memory viewed from parameters under no_grad");
        }
        Tensor Leaf(Tensor w) => w.detach().unsqueeze(0).expand(2, -1, -1, -1).clone().requires_grad_();
        var leaves = new[] { Leaf(w1), Leaf(w2) };
        var run = AssociativeMemoryNaive.Run(q, k, v, gates, new MemoryState(leaves, null), options);
        AssertClose.Tensors(run.Output, plain.Output, 1e-14, 0, "start memory as a leaf");
        var grads = Gradients.Of([run.Output.sum() + run.FinalState.Weights[0].sum()], leaves);
        Assert.All(grads, gr => Assert.True(gr.abs().sum().item<double>() > 0, "the start memory gets a gradient"));
        // keys computed from the start memory (MAC's keys come from the memory's reads): ∇_W ℓ holds k fixed
        var sum = leaves[0].sum();
        var kFromMemory = k + (sum - sum.detach());                                  // the same values, a path to the memory
        var coupled = AssociativeMemoryNaive.Run(q, kFromMemory, v, gates, new MemoryState(leaves, null), options);
        AssertClose.Tensors(coupled.Output, plain.Output, 1e-14, 0, "keys that depend on the start memory");
    }

    /// <summary>θ = 0 never writes: every read is M₀(q), and the final memory is (1 − α) decays of A₀ only.</summary>
    [Fact]
    public void ZeroLearningRateReadsTheStartMemory()
    {
        using var scope = NewDisposeScope();
        var c = Cases.Single(x => x.Name == "titans-mlp");
        var x = Inputs(c)(new Shape(1, 6, 2, 3, 3, 4), float64, new Generator(9));
        var (q, k, v, gates, h0) = Split(c, x);
        var noDecay = new MemoryGates(torch.zeros_like(gates.Theta), gates.Eta, null);
        var r = AssociativeMemory.Chunked(q, k, v, noDecay, new MemoryState(h0.Weights, h0.Momentum!.Select(m => torch.zeros_like(m)).ToArray()), c.Options(4));
        AssertClose.Tensors(r.Output, AssociativeMemory.Read(h0, q, c.Options(4)), 1e-14, 0, "θ = 0: y = M₀(q)");
    }

    /// <summary>State bytes per head: Dv·D (linear) or Dh·D + Dv·Dh (MLP) values, twice with momentum; the state object agrees.</summary>
    [Fact]
    public void StateBytesPerHeadAreTheParameterCount()
    {
        using var scope = NewDisposeScope();
        Assert.Equal(64L * 32 * 4 * 2, AssociativeMemory.StateBytesPerHead(MemoryArchitecture.Linear, 32, 64));
        Assert.Equal((128L * 32 + 64 * 128) * 8, AssociativeMemory.StateBytesPerHead(MemoryArchitecture.Mlp, 32, 64, 128, momentum: false, ScalarType.Float64));
        var s = MemoryState.FromHeads(3, true, torch.zeros(2, 9, 4), torch.zeros(2, 5, 9));
        Assert.Equal(AssociativeMemory.StateBytesPerHead(MemoryArchitecture.Mlp, 4, 5, 9), s.BytesPerHead);
    }

    /// <summary>The forms, the naive twin, a read and the stream leave no live tensor behind once their results are disposed.</summary>
    [Theory]
    [InlineData("titans-linear")]
    [InlineData("memora")]
    [InlineData("mlp-ln-momentum")]
    public void NoTensorLeaks(string name)
    {
        var c = Cases.Single(x => x.Name == name);
        using var scope = NewDisposeScope();
        var x = Inputs(c)(new Shape(1, 7, 2, 3, 3, 4), float64, new Generator(13));
        var (q, k, v, gates, h0) = Split(c, x);
        LeakCheck.AssertNoLeak(() => AssociativeMemory.Recurrent(q, k, v, gates, h0, c.Options(4)).Dispose(), $"{name} recurrent");
        LeakCheck.AssertNoLeak(() => AssociativeMemory.Chunked(q, k, v, gates, h0, c.Options(4)).Dispose(), $"{name} chunked");
        LeakCheck.AssertNoLeak(() => AssociativeMemoryNaive.Run(q, k, v, gates, h0, c.Options(4), 4).Dispose(), $"{name} naive");
        LeakCheck.AssertNoLeak(() => AssociativeMemory.Read(h0, q, c.Options(4)).Dispose(), $"{name} read");
        using var stream = new AssociativeMemoryStream(h0, c.Options(4));
        var (q0, k0, v0, th0, eta0, alpha0, delta0) = (q.select(1, 0), k.select(1, 0), v.select(1, 0), gates.Theta.select(1, 0), gates.Eta?.select(1, 0),
            gates.Alpha?.select(1, 0), gates.Delta?.select(1, 0));
        LeakCheck.AssertNoLeak(() => stream.Step(q0, k0, v0, th0, eta0, alpha0, delta0).Dispose(), $"{name} stream step");
    }

    public static IEnumerable<object[]> BadInputs()
    {
        var q = torch.randn(1, 4, 2, 3);
        var v = torch.randn(1, 4, 2, 5);
        var th = torch.full(new long[] { 1, 4, 2 }, 0.1f);
        var mlp = new AssociativeMemoryOptions { Architecture = MemoryArchitecture.Mlp };
        var h0 = MemoryState.FromHeads(1, false, torch.zeros(2, 5, 3));
        yield return ["q", (Action)(() => AssociativeMemory.Recurrent(torch.randn(4, 2, 3), q, v, new(th)))];
        yield return ["k", (Action)(() => AssociativeMemory.Recurrent(q, torch.randn(1, 4, 2, 4), v, new(th)))];
        yield return ["v", (Action)(() => AssociativeMemory.Recurrent(q, q, torch.randn(1, 3, 2, 5), new(th)))];
        yield return ["gates.Theta", (Action)(() => AssociativeMemory.Recurrent(q, q, v, new(torch.full(new long[] { 1, 4, 3 }, 0.1f))))];
        yield return ["gates.Theta", (Action)(() => AssociativeMemory.Recurrent(q, q, v, new(-th)))];
        yield return ["gates.Eta", (Action)(() => AssociativeMemory.Chunked(q, q, v, new(th, Eta: th + 1)))];
        yield return ["gates.Alpha", (Action)(() => AssociativeMemory.Chunked(q, q, v, new(th, Alpha: th.to(float64))))];
        yield return ["gates", (Action)(() => AssociativeMemory.Chunked(q, q, v, new(th), options: new() { Bias = AttentionalBias.Huber }))];
        yield return ["h0", (Action)(() => AssociativeMemory.Chunked(q, q, v, new(th), options: mlp))];
        yield return ["h0", (Action)(() => AssociativeMemory.Chunked(q, q, v, new(th, Eta: th), h0))];
        yield return ["h0", (Action)(() => AssociativeMemory.Chunked(q, q, v, new(th), MemoryState.FromHeads(1, false, torch.zeros(2, 3, 5))))];
        yield return ["options", (Action)(() => AssociativeMemory.Chunked(q, q, v, new(th), options: new() { ChunkSize = 0 }))];
        yield return ["v", (Action)(() => AssociativeMemory.Chunked(q, q, v, new(th),
            MemoryState.FromHeads(1, false, torch.zeros(2, 7, 3), torch.zeros(2, 5, 7)), mlp with { Residual = true }))];
        yield return ["options", (Action)(() => AssociativeMemory.Chunked(q, q, v, new(th), options: new() { LayerNorm = true }))];
        yield return ["chunk", (Action)(() => AssociativeMemoryNaive.Run(q, q, v, new(th), chunk: 0))];
    }

    [Theory]
    [MemberData(nameof(BadInputs))]
    public void BadInputThrowsNamingTheArgument(string argument, Action call)
    {
        var e = Assert.ThrowsAny<ArgumentException>(call);
        Assert.Equal(argument, e.ParamName);
    }

    /// <summary>
    /// NaN in a value gives NaN out, in every form, without throwing: the recurrences keep the tokens before it clean; the
    /// chunked form may spread it over its chunk (0·NaN in the masked products), never to an earlier chunk.
    /// </summary>
    [Theory]
    [InlineData("titans-linear")]
    [InlineData("titans-mlp")]
    [InlineData("yaad-huber")]
    public void NaNInGivesNaNOut(string name)
    {
        using var scope = NewDisposeScope();
        var c = Cases.Single(x => x.Name == name);
        var x = Inputs(c)(new Shape(1, 10, 2, 3, 3, 4), float64, new Generator(11));
        x[2][0, 5, 0, 1] = double.NaN;                                                   // v at t = 5 (second chunk of 4), head 0
        var (q, k, v, gates, h0) = Split(c, x);
        foreach (var (form, r, clean) in new[]
        {
            ("recurrent", AssociativeMemory.Recurrent(q, k, v, gates, h0, c.Options(1)), 6L),
            ("chunked", AssociativeMemory.Chunked(q, k, v, gates, h0, c.Options(4)), 4L),
            ("naive", AssociativeMemoryNaive.Run(q, k, v, gates, h0, c.Options(1)), 6L),
        })
        {
            Assert.False(r.Output.narrow(1, 0, clean).isnan().any().item<bool>(), $"{name} {form}: the first {clean} tokens read clean memories");
            Assert.True(r.Output.select(1, 9).select(1, 0).isnan().any().item<bool>(), $"{name} {form}: the last token of head 0 has a NaN");
        }
    }
}
