using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Core;

/// <summary>
/// How closely two forms of one module (a fast form and its naive twin) agree on the outputs and on every parameter
/// gradient, under one fixed random loss ℓ = Σ out ⊙ w (w ~ N(0, 1) from a seeded generator, the same for both forms).
/// </summary>
/// <param name="Output">max |out_fast − out_naive|.</param>
/// <param name="Gradients">max over parameters of max |∂ℓ/∂θ_fast − ∂ℓ/∂θ_naive|.</param>
/// <param name="ScaledOutput">max |Δ| / (1 + max |out_naive|): the conformance kit's scaled bound.</param>
/// <param name="ScaledGradients">the same bound per parameter gradient, the largest over parameters.</param>
public sealed record FormAgreement(double Output, double Gradients, double ScaledOutput, double ScaledGradients)
{
    /// <summary>Runs <paramref name="fast"/> and <paramref name="naive"/> (each a forward of <paramref name="module"/>'s parameters)
    /// with gradients on, back-propagates the same loss through each and compares. The parameters' .grad are zeroed before each
    /// form and hold the naive form's gradients afterwards.</summary>
    public static FormAgreement Of(nn.Module module, Func<Tensor> fast, Func<Tensor> naive, long seed = 7)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(fast);
        ArgumentNullException.ThrowIfNull(naive);
        using var scope = NewDisposeScope();
        using var grad = torch.enable_grad();
        var parameters = module.parameters().ToList();
        if (parameters.Count == 0) throw new ArgumentException($"{module.GetName()} has no parameters to compare gradients of.", nameof(module));
        Tensor? w = null;
        (Tensor Out, Tensor[] Grads) Run(Func<Tensor> form)
        {
            foreach (var p in parameters) p.grad?.zero_();
            var o = form();
            w ??= torch.randn(o.shape, dtype: o.dtype, generator: new Generator((ulong)seed)).to(o.device);
            if (!o.shape.SequenceEqual(w.shape))
                throw new InvalidOperationException($"the forms disagree in shape: fast [{string.Join(", ", w.shape)}], naive [{string.Join(", ", o.shape)}].");
            (o * w).sum().backward();
            return (o.detach(), parameters.Select(p => p.grad is null ? torch.zeros_like(p) : p.grad.clone()).ToArray());
        }
        var a = Run(fast);
        var b = Run(naive);
        static double Max(Tensor x) => x.abs().max().item<double>();
        static double Scaled(Tensor x, Tensor reference) => Max(x - reference) / (1 + Max(reference));
        var pairs = a.Grads.Zip(b.Grads).ToArray();
        return new FormAgreement(Max(a.Out - b.Out), pairs.Max(p => Max(p.First - p.Second)),
            Scaled(a.Out, b.Out), pairs.Max(p => Scaled(p.First, p.Second)));
    }
}
