using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Papers.Aaren;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.GpuCheck;

/// <summary>max |a − b| must stay within Atol + Rtol · max |reference|.</summary>
public readonly record struct Tolerance(double Atol, double Rtol)
{
    public double Allowed(double referenceMax) => Atol + Rtol * referenceMax;
    public override string ToString() => $"{Atol:G2}+{Rtol:G2}*max|ref|";
}

/// <summary>One named result of a check, copied to the CPU in float64.</summary>
public sealed record NamedValue(string Name, Tensor Value);

/// <summary>
/// One correctness check: <see cref="Run"/> computes its values on a device from inputs drawn on the CPU with a fixed
/// seed, so every device sees the same numbers. The same check on two devices must agree within <see cref="Tol"/>.
/// </summary>
public sealed record CheckCase(string Check, string Case, Tolerance Tol, Func<Device, IReadOnlyList<NamedValue>> Run);

/// <summary>One comparison: a value of one check on one device pair.</summary>
public sealed record CheckRow(string Check, string Case, string Value, string Compare, double MaxAbsDiff, double RmsRel,
    double Allowed, string Tolerance, bool Passed);

/// <summary>
/// The correctness list. Data-driven: add a <see cref="CheckCase"/> to <see cref="Cases"/> (for example the linear-attention
/// engine's forms below) and it runs CPU-repeat and CUDA-vs-CPU like the rest.
/// </summary>
public static class Correctness
{
    static readonly Tolerance ForwardTol = new(1e-4, 1e-4);
    static readonly Tolerance GradTol = new(1e-4, 1e-3);

    public static IReadOnlyList<CheckCase> Cases()
    {
        var list = new List<CheckCase>();
        // Reference softmax attention, float32, causal (end-aligned): MHA, GQA with an odd length, and one decode step.
        foreach (var (b, tq, tk, hq, hkv, d, grads) in new (long, long, long, long, long, long, bool)[]
                 { (2, 128, 128, 4, 4, 32, true), (1, 257, 257, 8, 2, 64, true), (2, 1, 96, 4, 2, 16, false) })
        {
            list.Add(new CheckCase("reference attention f32 causal", $"B{b} Tq{tq} Tk{tk} Hq{hq} Hkv{hkv} D{d}", grads ? GradTol : ForwardTol, device =>
            {
                var (q, k, v) = (Input(11, device, b, tq, hq, d), Input(12, device, b, tk, hkv, d), Input(13, device, b, tk, hkv, d));
                foreach (var t in new[] { q, k, v }) t.requires_grad_(grads);
                using var r = ReferenceAttention.Softmax(q, k, v, causal: true);
                var values = new List<NamedValue> { Cpu("output", r.Output), Cpu("lse", r.LogSumExp) };
                if (grads)
                {
                    (r.Output * Input(14, device, b, tq, hq, d)).sum().backward();
                    values.AddRange(new[] { Grad("dq", q), Grad("dk", k), Grad("dv", v) });
                }
                return values;
            }));
        }
        // Masks and the attention-sink variants built on the same scores (masks made on the inputs' device).
        list.Add(new CheckCase("reference attention f32, sliding-window mask", "B2 T128 H4 D32 w32", ForwardTol, device =>
        {
            using var r = ReferenceAttention.Softmax(Input(11, device, 2, 128, 4, 32), Input(12, device, 2, 128, 4, 32), Input(13, device, 2, 128, 4, 32),
                mask: AttentionMasks.SlidingWindow(128, 128, 32, device));
            return new[] { Cpu("output", r.Output), Cpu("lse", r.LogSumExp) };
        }));
        list.Add(new CheckCase("softmax-off-by-one f32 causal", "B2 T128 H4 D32", ForwardTol, device =>
        {
            using var r = AttentionVariants.Softmax1(Input(11, device, 2, 128, 4, 32), Input(12, device, 2, 128, 4, 32), Input(13, device, 2, 128, 4, 32),
                causal: true);
            return new[] { Cpu("output", r.Output), Cpu("lse", r.LogSumExp) };
        }));
        list.Add(new CheckCase("SDPA baseline f32 causal", "B2 T128 H4 D32", ForwardTol, device =>
            new[] { Cpu("output", SdpaBaseline.Forward(Input(11, device, 2, 128, 4, 32), Input(12, device, 2, 128, 4, 32), Input(13, device, 2, 128, 4, 32),
                causal: true)) }));

        // Aaren (attention as an RNN): the scan forms and the recurrent form, D not a power of two, and T = 1.
        foreach (var (b, t, h, d) in new (long, long, long, long)[] { (2, 200, 4, 24), (3, 1, 2, 8) })
        {
            string shape = $"B{b} T{t} H{h} D{d}";
            list.Add(new CheckCase("Aaren scan (Hillis-Steele) f32", shape, GradTol, device =>
            {
                var (q, k, v) = AarenInputs(device, b, t, h, d, grads: true);
                var o = AarenAttention.Scan(q, k, v, algo: ScanAlgo.HillisSteele);
                (o * Input(24, device, b, t, h, d)).sum().backward();
                return new[] { Cpu("output", o), Grad("dq", q), Grad("dk", k), Grad("dv", v) };
            }));
            list.Add(new CheckCase("Aaren scan (Blelloch) f32", shape, ForwardTol, device =>
            {
                var (q, k, v) = AarenInputs(device, b, t, h, d, grads: false);
                var states = AarenAttention.ScanStates(q, k, v, algo: ScanAlgo.Blelloch);
                return new[] { Cpu("output", SoftmaxMonoid.Output(states)), Cpu("lse", SoftmaxMonoid.LogSumExp(states)) };
            }));
            list.Add(new CheckCase("Aaren recurrent f32", shape, ForwardTol, device =>
            {
                var (q, k, v) = AarenInputs(device, b, t, h, d, grads: false);
                var (o, final) = AarenAttention.Recurrent(q, k, v);
                return new[] { Cpu("output", o), Cpu("final lse", SoftmaxMonoid.LogSumExp(final)), Cpu("final w", final.W) };
            }));
        }

        // The linear-attention engine: each form with elu+1, normalisation, per-head decay and h0; a chunk that does not
        // divide T, D not a power of two, and T = 1. Gradients through the chunked and parallel forms (incl. log λ).
        foreach (var (b, t, h, d, chunk) in new (long, long, long, long, int)[] { (2, 200, 4, 24, 64), (3, 1, 2, 8, 16) })
            foreach (var form in new[] { LinearForm.Parallel, LinearForm.Recurrent, LinearForm.Chunked })
            {
                bool grads = form != LinearForm.Recurrent;
                list.Add(new CheckCase($"linear attention {form.ToString().ToLowerInvariant()} f32",
                    $"B{b} T{t} H{h} D{d} chunk{chunk} elu+1 normalised decay h0", grads ? GradTol : ForwardTol, device =>
                {
                    var (q, k, v) = (Input(41, device, b, t, h, d), Input(42, device, b, t, h, d), Input(43, device, b, t, h, d));
                    var logDecay = -torch.linspace(0.01, 0.5, h, dtype: ScalarType.Float32).to(device);
                    foreach (var x in new[] { q, k, v, logDecay }) x.requires_grad_(grads);
                    using var h0 = new LinearState(Input(44, device, b, h, d, d).abs(), Input(45, device, b, h, d).abs());
                    var options = new LinearAttentionOptions { FeatureMap = FeatureMaps.EluPlusOne, Normalize = true, ChunkSize = chunk };
                    using var r = LinearAttention.Run(form, q, k, v, logDecay, h0, options);
                    var values = new List<NamedValue> { Cpu("output", r.Output), Cpu("final S", r.FinalState.S), Cpu("final z", r.FinalState.Z!) };
                    if (grads)
                    {
                        (r.Output * Input(46, device, b, t, h, d)).sum().backward();
                        values.AddRange(new[] { Grad("dq", q), Grad("dk", k), Grad("dv", v), Grad("dlogdecay", logDecay) });
                    }
                    return values;
                }));
            }

        // One training step of TinyGpt (causal attention mixer, and Aaren mixer): same seed, same batch.
        var config = new TinyGptConfig(Layers: 2, DModel: 64, Heads: 4, MlpRatio: 2, InputFeatures: 8, OutputFeatures: 8, Positions: PositionKind.Sinusoidal);
        list.Add(new CheckCase("TinyGpt training step f32", "attention, B4 T64 d64 L2", GradTol,
            device => TrainStep(device, config, () => new TinyGpt(config))));
        list.Add(new CheckCase("TinyGpt training step f32", "Aaren mixer, B4 T64 d64 L2", GradTol,
            device => TrainStep(device, config, () => AarenStack.Create(config))));
        return list;
    }

    /// <summary>Forward, MSE loss, backward, one SGD step (lr 0.05), forward again: loss, three gradients, loss after.</summary>
    static IReadOnlyList<NamedValue> TrainStep(Device device, TinyGptConfig config, Func<TinyGpt> build)
    {
        torch.manual_seed(5);
        using var model = build().to(device);
        model.train();
        var x = Input(31, device, 4, 64, config.InputFeatures);
        var y = Input(32, device, 4, 64, config.OutputFeatures);
        var loss = nn.functional.mse_loss(model.call(x), y);
        loss.backward();
        var named = model.named_parameters().ToList();
        var values = new List<NamedValue> { Cpu("loss", loss) };
        foreach (int i in new[] { 0, named.Count / 2, named.Count - 1 })
            values.Add(Grad($"grad {named[i].name}", named[i].parameter));
        using (torch.no_grad())
            foreach (var (_, p) in named) if (p.grad is { } g) p.sub_(g * 0.05);
        values.Add(Cpu("loss after one SGD step", nn.functional.mse_loss(model.call(x), y)));
        return values;
    }

    static (Tensor Q, Tensor K, Tensor V) AarenInputs(Device device, long b, long t, long h, long d, bool grads)
    {
        var q = Input(21, device, h, d).requires_grad_(grads);
        var k = Input(22, device, b, t, h, d).requires_grad_(grads);
        var v = Input(23, device, b, t, h, d).requires_grad_(grads);
        return (q, k, v);
    }

    /// <summary>Standard normal float32 drawn on the CPU from <paramref name="seed"/>, then moved: the same numbers on every device.</summary>
    public static Tensor Input(int seed, Device device, params long[] shape)
    {
        var generator = new Generator((ulong)seed);
        using var cpu = torch.randn(shape, dtype: ScalarType.Float32, generator: generator);
        return cpu.to(device).detach();
    }

    static NamedValue Cpu(string name, Tensor t) => new(name, t.detach().to(ScalarType.Float64, CPU));

    /// <summary>The gradient of <paramref name="leaf"/>; zeros when the output does not depend on it (e.g. Aaren's q at T = 1).</summary>
    static NamedValue Grad(string name, Tensor leaf) => Cpu(name, leaf.grad ?? torch.zeros_like(leaf));

    /// <summary>
    /// Runs every case on the CPU twice (must agree to the bit: same seed, same thread count) and, when
    /// <paramref name="cuda"/> is given, on CUDA against the first CPU run. <paramref name="perturb"/> is added to the
    /// second side of every comparison (self-test).
    /// </summary>
    public static List<CheckRow> Run(IEnumerable<CheckCase> cases, Device? cuda, double perturb, Action<CheckRow> report)
    {
        var rows = new List<CheckRow>();
        foreach (var c in cases)
        {
            using var scope = NewDisposeScope();
            CheckRow Error(string compare, Exception e)
            {
                var row = new CheckRow(c.Check, c.Case, $"error: {e.GetType().Name}: {e.Message.Split('\n')[0].Trim()}", compare, double.NaN, double.NaN,
                    double.NaN, "", false);
                rows.Add(row);
                report(row);
                return row;
            }
            IReadOnlyList<NamedValue> reference;
            try { reference = Evaluate(c, CPU); }
            catch (Exception e) { Error("cpu", e); continue; }         // one broken check must not end the run
            var sides = new List<(string Compare, IReadOnlyList<NamedValue> Values, Tolerance Tol)>();
            foreach (var (compare, device, tol) in new[] { ("cpu vs cpu (repeat)", (Device?)CPU, new Tolerance(0, 0)), ("cuda vs cpu", cuda, c.Tol) })
            {
                if (device is null) continue;
                try { sides.Add((compare, Evaluate(c, device), tol)); }
                catch (Exception e) { Error(compare, e); }
            }
            foreach (var (compare, values, tol) in sides)
                for (int i = 0; i < reference.Count; i++)
                {
                    var expected = reference[i].Value;
                    var actual = perturb != 0 ? values[i].Value + perturb : values[i].Value;
                    var stats = ErrorStats.Of(actual, expected);
                    double refMax = expected.numel() == 0 ? 0 : expected.abs().max().item<double>();
                    double allowed = tol.Allowed(refMax);
                    bool nanMismatch = actual.isnan().ne(expected.isnan()).any().item<bool>();
                    bool passed = !nanMismatch && !double.IsNaN(stats.MaxAbs) && stats.MaxAbs <= allowed;
                    var row = new CheckRow(c.Check, c.Case, reference[i].Name, compare, stats.MaxAbs, stats.RmsRelative, allowed, tol.ToString(), passed);
                    rows.Add(row);
                    report(row);
                }
        }
        return rows;
    }

    static IReadOnlyList<NamedValue> Evaluate(CheckCase c, Device device)
    {
        using var scope = NewDisposeScope();
        var values = c.Run(device);
        foreach (var v in values) v.Value.MoveToOuterDisposeScope();
        return values;
    }
}
