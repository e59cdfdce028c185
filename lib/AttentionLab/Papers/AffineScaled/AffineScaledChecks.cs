using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AffineScaled;

/// <summary>The exactness checks of the experiment and the tests (float64 toy tensors): each returns the measured gap.</summary>
public static class AffineScaledChecks
{
    const int B = 2, T = 7, H = 3, D = 5, Dv = 4, Width = 11;

    /// <summary>max |Δ| between two functions of the same inputs over the output and the gradient of every input (loss = Σ y ⊙ g).</summary>
    public static double Gap(Func<Tensor[], Tensor> a, Func<Tensor[], Tensor> b, Tensor[] inputs, Generator gen)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(inputs);
        using var scope = NewDisposeScope();
        var leaves = inputs.Select(x => x.detach().requires_grad_(true)).ToArray();
        var ya = a(leaves);
        var yb = b(leaves);
        var g = torch.randn(ya.shape, generator: gen, dtype: ya.dtype).to(ya.device);
        double worst = (ya - yb).abs().max().item<double>();
        var ga = Gradients.Of(new[] { (ya * g).sum() }, leaves, allowUnused: true);
        var gb = Gradients.Of(new[] { (yb * g).sum() }, leaves, allowUnused: true);
        foreach (var (x, y) in ga.Zip(gb)) worst = Math.Max(worst, (x - y).abs().max().item<double>());
        return double.IsNaN(worst) ? double.PositiveInfinity : worst;
    }

    /// <summary>Toy inputs q, k [B, T, H, D], v [B, T, H, Dv], α ∈ [0, 1]^{B×T×H} and α_ma ∈ [0, 1]^H (float64).</summary>
    public static Tensor[] ToyInputs(Generator gen, Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        var f = float64;
        return new[]
        {
            torch.randn(B, T, H, D, generator: gen, dtype: f).to(device), torch.randn(B, T, H, D, generator: gen, dtype: f).to(device),
            torch.randn(B, T, H, Dv, generator: gen, dtype: f).to(device), torch.rand(B, T, H, generator: gen, dtype: f).to(device),
            torch.rand(H, generator: gen, dtype: f).to(device),
        };
    }

    /// <summary>max |Δ| of <paramref name="form"/> against the naive twin (outputs and the gradients of q, k, v, α, α_ma), both norms.</summary>
    public static double FormVsTwin(Func<Tensor, Tensor, Tensor, Tensor, Tensor, BiasNorm, Tensor> form, Device device, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(form);
        double worst = 0;
        foreach (var norm in Enum.GetValues<BiasNorm>())
        {
            var gen = new Generator((ulong)seed);
            var inputs = ToyInputs(gen, device);
            worst = Math.Max(worst, Gap(x => form(x[0], x[1], x[2], x[3], x[4], norm),
                x => AffineScaledNaive.Attention(x[0], x[1], x[2], x[3], x[4], norm), inputs, gen));
        }
        return worst;
    }

    /// <summary>
    /// The layer (α_ma set to random values) against <see cref="AffineScaledNaive.Layer"/>: output and the gradients of x and every parameter.
    /// </summary>
    public static double LayerVsTwin(Device device, int seed = 0)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(seed);
        var gen = new Generator((ulong)seed + 7);
        using var mixer = new AffineScaledAttention(Width, H, keyDim: D, valueDim: Dv);
        mixer.to(float64).to(device);
        using (torch.no_grad()) mixer.AlphaMa.copy_(torch.rand(H, generator: gen, dtype: float64));
        mixer.eval();
        var x = torch.randn(B, T, Width, generator: gen, dtype: float64).to(device);
        var parameters = mixer.parameters().ToList();
        // x and the parameters as leaves: the parameters are the mixer's own (the functions close over them)
        var leaves = new List<Tensor> { x.requires_grad_(true) };
        leaves.AddRange(parameters);
        var g = torch.randn(B, T, Width, generator: gen, dtype: float64).to(device);
        var fast = mixer.call(x);
        var naive = AffineScaledNaive.Layer(mixer, x);
        double worst = (fast - naive).abs().max().item<double>();
        var gf = Gradients.Of(new[] { (fast * g).sum() }, leaves, allowUnused: true);
        var gn = Gradients.Of(new[] { (naive * g).sum() }, leaves, allowUnused: true);
        foreach (var (a, b) in gf.Zip(gn)) worst = Math.Max(worst, (a - b).abs().max().item<double>());
        return double.IsNaN(worst) ? double.PositiveInfinity : worst;
    }

    /// <summary>Spec §6: max_i |Σ_j a_ij − α_ma| (VisibleKeys) on random scores, α and α_ma.</summary>
    public static double RowMassGap(Device device, int seed = 0)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        var x = ToyInputs(gen, device);
        var a = AffineScaledOps.Weights(AffineScaledOps.CausalScores(x[0], x[1]), x[3].permute(0, 2, 1), x[4].view(1, -1, 1));
        return (a.sum(-1) - x[4].view(1, -1, 1)).abs().max().item<double>();
    }

    /// <summary>Spec §6: α ≡ α_ma ≡ 1 gives exactly softmax attention: max |Δ| against the library's reference softmax.</summary>
    public static double UnitAlphaIsSoftmax(Device device, int seed = 0)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        var x = ToyInputs(gen, device);
        double worst = 0;
        foreach (var norm in Enum.GetValues<BiasNorm>())
        {
            var z = AffineScaledOps.Explicit(x[0], x[1], x[2], torch.ones_like(x[3]), torch.ones_like(x[4]), norm);
            worst = Math.Max(worst, (z - ReferenceAttention.Softmax(x[0], x[1], x[2], causal: true).Output).abs().max().item<double>());
        }
        return worst;
    }

    /// <summary>
    /// The causality probe: change the layer input at positions ≥ 4 and measure max |Δ| of the outputs before position 4 —
    /// exactly 0 for <paramref name="norm"/> = VisibleKeys; FullLength's β carries the future values (the leak).
    /// </summary>
    public static double CausalityLeak(BiasNorm norm, Device device, int seed = 0)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(seed);
        var gen = new Generator((ulong)seed + 3);
        using var mixer = new AffineScaledAttention(Width, H, norm: norm, keyDim: D, valueDim: Dv);
        mixer.to(float64).to(device);
        mixer.AlphaMa.copy_(torch.rand(H, generator: gen, dtype: float64));
        mixer.eval();
        var x = torch.randn(B, T, Width, generator: gen, dtype: float64).to(device);
        var changed = x.clone();
        changed[TensorIndex.Colon, TensorIndex.Slice(4, T)] = torch.randn(B, T - 4, Width, generator: gen, dtype: float64).to(device);
        var y0 = mixer.call(x).narrow(1, 0, 4);
        var y1 = mixer.call(changed).narrow(1, 0, 4);
        return (y0 - y1).abs().max().item<double>();
    }

    /// <summary>
    /// Spec §6: n training-mode forwards move α_ma to the closed form Σ_s (1 − ρ) ρ^{n−1−s} mean(α_s) (α_ma,0 = 0); eval-mode
    /// forwards leave it. Returns (max |α_ma − closed form|, max |change| over eval forwards).
    /// </summary>
    public static (double ClosedFormGap, double EvalChange) Ema(Device device, int seed = 0, int steps = 5)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(seed);
        var gen = new Generator((ulong)seed + 5);
        using var mixer = new AffineScaledAttention(Width, H, rho: 0.9, keyDim: D, valueDim: Dv);
        mixer.to(float64).to(device);
        mixer.train();
        var expected = torch.zeros(H, dtype: float64, device: device);
        for (int s = 0; s < steps; s++)
        {
            var x = torch.randn(B, T, Width, generator: gen, dtype: float64).to(device) * 4;
            var mean = mixer.Alpha(x).mean(new long[] { 0, 1 });                       // α of this batch, per head
            mixer.call(x);
            expected = expected * 0.9 + mean * 0.1;                                     // the recurrence; its sum is the closed form
        }
        double gap = (mixer.AlphaMa - expected).abs().max().item<double>();
        var before = mixer.AlphaMa.clone();
        mixer.eval();
        for (int s = 0; s < 3; s++) mixer.call(torch.randn(B, T, Width, generator: gen, dtype: float64).to(device));
        return (gap, (mixer.AlphaMa - before).abs().max().item<double>());
    }

    /// <summary>Token-by-token decoding (KV cache, α per token) against the parallel forward: max |Δ| (float64).</summary>
    public static double StepVsForward(Device device, int seed = 0)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(seed);
        var gen = new Generator((ulong)seed + 9);
        using var mixer = new AffineScaledAttention(Width, H, keyDim: D, valueDim: Dv);
        mixer.to(float64).to(device);
        mixer.AlphaMa.copy_(torch.rand(H, generator: gen, dtype: float64));
        mixer.eval();
        var x = torch.randn(B, T, Width, generator: gen, dtype: float64).to(device);
        var full = mixer.call(x);
        using var state = mixer.NewState(B, float64, device);
        double worst = 0;
        for (int t = 0; t < T; t++) worst = Math.Max(worst, (mixer.Step(x.select(1, t), state) - full.select(1, t)).abs().max().item<double>());
        return worst;
    }

    /// <summary>φ at −5, 0 and 5 (spec §6: 0, 0.5, 1).</summary>
    public static double[] ClippingAt()
    {
        using var scope = NewDisposeScope();
        return AffineScaledOps.LinearClipping(torch.tensor(new[] { -5.0, 0.0, 5.0 })).data<double>().ToArray();
    }
}
