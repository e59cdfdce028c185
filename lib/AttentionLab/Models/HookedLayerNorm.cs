using AttentionLab.Interp;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// LayerNorm with a hook on its output: y = hook_normalized((x − μ) / √(σ² + ε) · w + b), over the last dimension.
/// Parameters are named weight and bias (as nn.LayerNorm's).
/// </summary>
public sealed class HookedLayerNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight, bias;
    readonly HookPoint hook_normalized = new();
    readonly double eps;

    public HookedLayerNorm(int dim, double eps = 1e-5) : base(nameof(HookedLayerNorm))
    {
        this.eps = eps;
        weight = nn.Parameter(torch.ones(dim));
        bias = nn.Parameter(torch.zeros(dim));
        RegisterComponents();
    }

    public Parameter Weight => weight;
    public Parameter Bias => bias;
    /// <summary>ε inside the square root.</summary>
    public double Eps => eps;
    public HookPoint HookNormalized => hook_normalized;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = nn.functional.layer_norm(x, new[] { x.shape[^1] }, weight, bias, eps);
        return hook_normalized.call(y).MoveToOuterDisposeScope();
    }
}
