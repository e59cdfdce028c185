using AttentionLab.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// A LoRA adapter (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", arXiv 2106.09685) on one
/// <see cref="Linear"/> W [out, in]: y = W x + b + (α/r) B A x, with A [r, in] random and B [out, r] zero, so the
/// adapted layer starts as the base layer exactly. It rides on the Linear as a forward hook and is registered beside
/// it, as the submodule "&lt;name&gt;_lora" of the Linear's parent (parameters "….qkv_lora.a", "….qkv_lora.b"), so the
/// model's <c>parameters()</c>, <c>to()</c> and a trainer see A and B, and the layer works wherever the model calls it
/// with <c>.call</c> (forward and decode steps alike).
/// </summary>
/// <remarks>
/// y = W x + b + s · B (A x),  s = α / r                                   (LoRA eq. 3, scaled as the paper's §4.1)
/// init: A ~ N(0, 1/in) [scale ours: the paper says "random Gaussian" without a variance], B = 0  ⇒  y = W x + b at start
/// Merge:   W ← W + s · B A   (the hook then adds nothing: one matmul at inference, as the paper deploys it)
/// Unmerge: W ← W − s · B A
/// </remarks>
public sealed class LoraAdapter : nn.Module
{
    readonly Parameter a, b;
    readonly TargetRef target;    // not a Module field: RegisterComponents would make the Linear a child of its own child

    internal LoraAdapter(string path, Linear target, int rank, double alpha, Generator? generator) : base(nameof(LoraAdapter))
    {
        Guard.Positive(rank, nameof(rank));
        if (!(alpha > 0) || double.IsInfinity(alpha)) throw new ArgumentException($"alpha must be positive and finite, got {alpha}.", nameof(alpha));
        var w = target.weight!;
        long outF = w.shape[0], inF = w.shape[1];
        if (rank > Math.Min(inF, outF))
            throw new ArgumentException($"rank {rank} exceeds min(in, out) = {Math.Min(inF, outF)} of {path} ({Guard.ShapeText(w)}).", nameof(rank));
        (Path, Rank, Alpha, this.target) = (path, rank, alpha, new TargetRef(target));
        using (torch.no_grad())
        {
            var init = torch.randn(new[] { (long)rank, inF }, dtype: ScalarType.Float64, generator: generator) / Math.Sqrt(inF);   // A ~ N(0, 1/in)
            a = nn.Parameter(init.to(w.dtype, w.device));
            b = nn.Parameter(torch.zeros(new[] { outF, (long)rank }, dtype: w.dtype, device: w.device));                      // B = 0
        }
        RegisterComponents();
    }

    /// <summary>The module path of the adapted Linear (e.g. "blocks.0.attn.qkv").</summary>
    public string Path { get; }
    /// <summary>r.</summary>
    public int Rank { get; }
    /// <summary>α.</summary>
    public double Alpha { get; }
    /// <summary>s = α / r.</summary>
    public double Scale => Alpha / Rank;
    /// <summary>A [r, in].</summary>
    public Parameter A => a;
    /// <summary>B [out, r].</summary>
    public Parameter B => b;
    /// <summary>The adapted layer.</summary>
    public Linear Target => target.Linear;
    /// <summary>True after <see cref="Merge"/>: s·BA lives inside W and the hook adds nothing.</summary>
    public bool Merged { get; private set; }

    /// <summary>The low-rank update ΔW = s · B A [out, in].</summary>
    public Tensor Delta()
    {
        using var scope = NewDisposeScope();
        return (b.matmul(a) * Scale).MoveToOuterDisposeScope();
    }

    /// <summary>s · B (A x) for x [..., in] (zero contribution once merged: the hook returns the base output).</summary>
    internal Tensor? Adapt(Tensor x, Tensor y)
    {
        if (Merged) return null;
        return y + nn.functional.linear(nn.functional.linear(x, a), b) * Scale;      // W x + b + s · B (A x)
    }

    /// <summary>W ← W + s·BA; the adapter then adds nothing. Throws when already merged.</summary>
    public void Merge()
    {
        if (Merged) throw new InvalidOperationException($"the adapter on {Path} is already merged.");
        using var scope = NewDisposeScope();
        using (torch.no_grad()) target.Linear.weight!.add_(Delta());
        Merged = true;
    }

    /// <summary>W ← W − s·BA (undoes <see cref="Merge"/>; with B and A unchanged since). Throws when not merged.</summary>
    public void Unmerge()
    {
        if (!Merged) throw new InvalidOperationException($"the adapter on {Path} is not merged.");
        using var scope = NewDisposeScope();
        using (torch.no_grad()) target.Linear.weight!.sub_(Delta());
        Merged = false;
    }

    sealed record TargetRef(Linear Linear);
}

/// <summary>
/// Applies LoRA adapters (<see cref="LoraAdapter"/>) to chosen Linear modules of a model by module path
/// (e.g. TinyGpt's attention "blocks.0.attn.qkv" = W_QKV and "blocks.0.attn.proj" = W_O), freezes the base weights,
/// and merges or unmerges every adapter at once.
/// </summary>
public static class Lora
{
    /// <summary>
    /// Wraps each Linear named in <paramref name="paths"/> (as <c>named_modules()</c> names it) with a fresh adapter of rank
    /// <paramref name="rank"/> and scale α / r. A is drawn from <paramref name="generator"/> (or torch's global generator).
    /// Throws ArgumentException naming a path that is missing, not a Linear, or already adapted.
    /// </summary>
    public static LoraSet Apply(nn.Module model, IEnumerable<string> paths, int rank, double alpha, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(paths);
        var wanted = paths.ToList();
        if (wanted.Count == 0) throw new ArgumentException("give at least one module path.", nameof(paths));
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        var adapters = new List<LoraAdapter>();
        foreach (var path in wanted)
        {
            if (!modules.TryGetValue(path, out var module))
                throw new ArgumentException($"no module at path '{path}' (Linear modules: {string.Join(", ", LinearPaths(model).Take(12))}…).", nameof(paths));
            if (module is not Linear linear) throw new ArgumentException($"'{path}' is a {module.GetType().Name}, not a Linear.", nameof(paths));
            int dot = path.LastIndexOf('.');
            var parent = dot < 0 ? model : modules[path[..dot]];
            string name = path[(dot + 1)..] + "_lora";
            if (parent.named_children().Any(c => c.name == name)) throw new ArgumentException($"'{path}' already has a LoRA adapter.", nameof(paths));
            var adapter = new LoraAdapter(path, linear, rank, alpha, generator);
            parent.register_module(name, adapter);     // beside the Linear (whose own to() ignores children): A, B join the model's parameters
            linear.register_forward_hook((_, x, y) => adapter.Adapt(x, y)!);         // y + s·B(A x) wherever the model calls it
            adapters.Add(adapter);
        }
        return new LoraSet(adapters);
    }

    /// <summary>Paths of every Linear in the model (the candidates for <see cref="Apply(nn.Module, IEnumerable{string}, int, double, Generator?)"/>).</summary>
    public static IReadOnlyList<string> LinearPaths(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.named_modules().Where(m => m.module is Linear).Select(m => m.name).ToList();
    }

    /// <summary>
    /// Freezes every parameter of <paramref name="model"/> except the LoRA adapters' A and B (and those
    /// <paramref name="keepTrainable"/> names, e.g. SinkLoRA's "LoRA+" keeps embeddings and norms trainable).
    /// Returns the names left trainable.
    /// </summary>
    public static IReadOnlyList<string> FreezeBase(nn.Module model, Func<string, bool>? keepTrainable = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var trainable = new List<string>();
        foreach (var (name, p) in model.named_parameters())
        {
            bool keep = IsAdapterParameter(name) || (keepTrainable?.Invoke(name) ?? false);
            p.requires_grad = keep;
            if (keep) trainable.Add(name);
        }
        return trainable;
    }

    /// <summary>True for a parameter name inside a LoRA adapter ("…_lora.a" = A, "…_lora.b" = B).</summary>
    public static bool IsAdapterParameter(string name) =>
        name.EndsWith("_lora.a", StringComparison.Ordinal) || name.EndsWith("_lora.b", StringComparison.Ordinal);
}

/// <summary>The adapters one <see cref="Lora.Apply"/> call made.</summary>
public sealed class LoraSet(IReadOnlyList<LoraAdapter> adapters)
{
    /// <summary>The adapters, in the order of the paths given.</summary>
    public IReadOnlyList<LoraAdapter> Adapters { get; } = adapters;
    /// <summary>The adapter on the Linear at <paramref name="path"/>.</summary>
    public LoraAdapter this[string path] => Adapters.FirstOrDefault(a => a.Path == path)
        ?? throw new ArgumentException($"no adapter at '{path}'.", nameof(path));
    /// <summary>A and B of every adapter (what a LoRA fine-tune trains).</summary>
    public IEnumerable<Parameter> Parameters => Adapters.SelectMany(a => new[] { a.A, a.B });
    /// <summary>Trainable LoRA parameters: Σ r (in + out).</summary>
    public long ParameterCount => Parameters.Sum(p => p.numel());
    /// <summary>Folds every adapter into its W (<see cref="LoraAdapter.Merge"/>).</summary>
    public void Merge() { foreach (var a in Adapters) a.Merge(); }
    /// <summary>Takes every adapter back out of its W (<see cref="LoraAdapter.Unmerge"/>).</summary>
    public void Unmerge() { foreach (var a in Adapters) a.Unmerge(); }
}
