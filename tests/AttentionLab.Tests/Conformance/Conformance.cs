using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests;

/// <summary>
/// One awkward shape of the shared grid: batch, tokens, heads, key/query width, value width, and a chunk (block) size
/// that a chunked form uses. The grid covers T = 1, odd T and D, chunks that do not divide T, and Dv ≠ D.
/// </summary>
public sealed record Shape(int B, int T, int H, int D, int Dv, int Chunk)
{
    public override string ToString() => $"B{B} T{T} H{H} D{D} Dv{Dv} chunk{Chunk}";
}

/// <summary>What one form returns: its output and its final states (none for a stateless form), in a fixed order.</summary>
public sealed record FormOutput(Tensor Output, params Tensor[] States);

/// <summary>
/// A named form of a method: inputs (in the order the method's input factory makes them) → output and states.
/// <paramref name="Gradients"/> false: a forward-only form (no autograd path), compared on outputs and states only.
/// </summary>
public sealed record Form(string Name, Func<Tensor[], FormOutput> Run, bool Gradients = true)
{
    public override string ToString() => Name;
}

/// <summary>
/// The conformance kit: given a method's naive twin and its fast forms, compares outputs, final states and the gradient of
/// every input over the shared grid of awkward shapes — float64 forms against the float64 twin at 1e-10, float32 forms
/// against the float64 twin at the method's float32 tolerance (the spec's; 1e-5 unless the spec says otherwise).
/// </summary>
public static class Conformance
{
    /// <summary>The shared grid (every multi-form test runs on it).</summary>
    public static IReadOnlyList<Shape> Grid { get; } =
    [
        new(1, 1, 1, 1, 1, 4),      // one token, width 1
        new(2, 7, 3, 5, 4, 4),      // odd T and D, a chunk that does not divide T, Dv ≠ D
        new(2, 13, 2, 3, 6, 8),     // T not a power of two, the last chunk short
        new(1, 16, 2, 8, 8, 16),    // one full chunk
        new(3, 33, 1, 7, 3, 8),     // 2^k + 1 tokens, several chunks
        new(1, 9, 2, 4, 4, 1),      // chunk 1: every token its own chunk
        new(2, 7, 2, 6, 3, 16),     // 1 < T < chunk
        new(1, 64, 2, 8, 8, 32),    // an exact multiple: two full chunks
        new(2, 100, 4, 6, 3, 64),   // long T, the last chunk 36 of 64
    ];

    /// <summary>The grid as xunit theory data.</summary>
    public static TheoryData<Shape> Shapes()
    {
        var data = new TheoryData<Shape>();
        foreach (var s in Grid) data.Add(s);
        return data;
    }

    /// <summary>The grid crossed with a method's variants (h0 or none, causal or not, …) as xunit member data: {shape, variant}.</summary>
    public static IEnumerable<object[]> ShapesWith(object a, object b) => Cross(a, b);

    /// <inheritdoc cref="ShapesWith(object, object)"/>
    public static IEnumerable<object[]> ShapesWith(object a, object b, object c) => Cross(a, b, c);

    /// <inheritdoc cref="ShapesWith(object, object)"/>
    public static IEnumerable<object[]> ShapesWith(object a, object b, object c, object d) => Cross(a, b, c, d);

    /// <summary>The grid crossed with any number of variants (for member data built in code): {shape, variant}.</summary>
    public static IEnumerable<object[]> ShapesWithEach(params object[] variants) => Cross(variants);

    static IEnumerable<object[]> Cross(params object[] variants) => Grid.SelectMany(s => variants.Select(v => new object[] { s, v }));

    /// <summary>
    /// Checks every form in <paramref name="forms"/> against <paramref name="naive"/> at <paramref name="shape"/>:
    /// <paramref name="inputs"/>(shape, dtype, generator) makes the inputs (the kit sets requires_grad on the floating ones);
    /// float64: outputs, states and input gradients within <paramref name="tol64"/>; float32: the same against the float64
    /// twin within <paramref name="tol32"/> (gradients within <paramref name="gradTol32"/>, default = tol32 × 10).
    /// A tolerance bounds max |Δ| by tol·(1 + max|ref|); with <paramref name="rms32"/> tol32 bounds the RMS relative error
    /// of float32 outputs and states instead (the specs' "float32 rel"; gradients, which can be 0, keep max |Δ|).
    /// Gradients come from loss = Σ output·g + Σ state·g_s with fixed random g, so every state's gradient path counts;
    /// <paramref name="gradients"/> false (or a forward-only form) skips them.
    /// <paramref name="fixedInputs"/> (indices into the inputs): floating inputs held constant — they never require grad and
    /// no gradient is compared for them (routing scores that only decide membership; a decay the twin takes as plain numbers).
    /// <paramref name="atol32"/>: the absolute part of the float32 bound on outputs and states (default tol32; 0 bounds
    /// max |Δ| by tol32·max|ref| alone). <paramref name="gradTol64"/>: the float64 gradient tolerance (default tol64).
    /// Throws naming the form, the dtype and what differs.
    /// </summary>
    public static void Check(Shape shape, Func<Shape, ScalarType, Generator, Tensor[]> inputs, Form naive, IEnumerable<Form> forms,
        double tol32 = 1e-5, double tol64 = 1e-10, double? gradTol32 = null, bool gradients = true, int seed = 0, bool rms32 = false,
        IReadOnlyCollection<int>? fixedInputs = null, double? atol32 = null, double? gradTol64 = null)
    {
        ArgumentNullException.ThrowIfNull(shape);
        var list = forms.ToList();
        if (list.Count == 0) throw new ArgumentException("no fast forms to compare.", nameof(forms));
        var held = fixedInputs ?? [];
        using var scope = NewDisposeScope();
        var reference = Evaluate(naive, inputs(shape, ScalarType.Float64, new Generator((ulong)seed)), gradients, seed, held);
        foreach (var form in list)
        {
            bool grads = gradients && form.Gradients;
            var f64 = Evaluate(form, inputs(shape, ScalarType.Float64, new Generator((ulong)seed)), grads, seed, held);
            Compare(form.Name, "float64", shape, f64, reference, tol64, tol64, gradTol64 ?? tol64, rms: false);
            var f32 = Evaluate(form, inputs(shape, ScalarType.Float32, new Generator((ulong)seed)), grads, seed, held);
            Assert.True(f32.Output.dtype == ScalarType.Float32, $"{form.Name} (float32, {shape}): the output is {f32.Output.dtype}");
            Compare(form.Name, "float32", shape, f32, reference, atol32 ?? tol32, tol32, gradTol32 ?? tol32 * 10, rms32);
        }
    }

    sealed record Evaluated(Tensor Output, Tensor[] States, Tensor?[] Gradients);

    static Evaluated Evaluate(Form form, Tensor[] inputs, bool gradients, int seed, IReadOnlyCollection<int> held)
    {
        var leaves = inputs.Select((x, i) => x.is_floating_point() && gradients && !held.Contains(i) ? x.detach().requires_grad_(true) : x).ToArray();
        var result = form.Run(leaves);
        if (!gradients) return new Evaluated(result.Output.detach(), result.States.Select(s => s.detach()).ToArray(), []);
        var gen = new Generator((ulong)seed + 1);
        Tensor loss = (result.Output * torch.randn(result.Output.shape, generator: gen, dtype: ScalarType.Float64).to(result.Output.dtype)).sum();
        foreach (var s in result.States.Where(s => s.requires_grad))
            loss = loss + (s * torch.randn(s.shape, generator: gen, dtype: ScalarType.Float64).to(s.dtype)).sum();
        var wanted = leaves.Where(l => l.requires_grad).ToList();
        var grads = wanted.Count == 0 ? [] : Gradients.Of([loss], wanted, allowUnused: true);   // an unused input gets zeros
        var byInput = new Tensor?[leaves.Length];
        // an input the output does not depend on (T = 1: the softmax of one score is 1) gets no gradient: it is zero
        for (int i = 0, g = 0; i < leaves.Length; i++)
            if (leaves[i].requires_grad) byInput[i] = grads[g++];
        return new Evaluated(result.Output.detach(), result.States.Select(s => s.detach()).ToArray(), byInput);
    }

    static void Close(Tensor actual, Tensor reference, double atol, double tol, bool rms, string what)
    {
        if (!rms) { AssertClose.Tensors(actual, reference, atol, tol, what); return; }
        var err = ErrorStats.Of(actual, reference);
        Assert.True(err.RmsRelative < tol, $"{what} differs from its reference: {err} (allowed rms-rel {tol:E1}).");
    }

    static void Compare(string form, string dtype, Shape shape, Evaluated actual, Evaluated reference, double atol, double tol, double gradTol, bool rms)
    {
        string where = $"{form} ({dtype}, {shape})";
        Assert.True(actual.Output.shape.SequenceEqual(reference.Output.shape),
            $"{where}: output shape [{string.Join(", ", actual.Output.shape)}] vs the twin's [{string.Join(", ", reference.Output.shape)}]");
        Close(actual.Output, reference.Output, atol, tol, rms, $"{where}: output");
        Assert.True(actual.States.Length == reference.States.Length, $"{where}: {actual.States.Length} final states vs the twin's {reference.States.Length}");
        for (int i = 0; i < actual.States.Length; i++)
            Close(actual.States[i], reference.States[i], atol, tol, rms, $"{where}: final state {i}");
        for (int i = 0; i < actual.Gradients.Length; i++)
        {
            var (a, r) = (actual.Gradients[i], reference.Gradients[i]);
            if (r is null && a is null) continue;
            Assert.True(a is not null && r is not null, $"{where}: input {i} has a gradient on one side only");
            AssertClose.Tensors(a!, r!, gradTol, gradTol, $"{where}: gradient of input {i}");
        }
    }
}
