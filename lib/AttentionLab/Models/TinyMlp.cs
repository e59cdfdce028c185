using AttentionLab.Interp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>MLP(x) = W_out · hook_post(GELU(hook_pre(W_in x + b_in))) + b_out.</summary>
public sealed class TinyMlp : nn.Module<Tensor, Tensor>
{
    readonly Linear fc_in, fc_out;
    readonly HookPoint hook_pre = new(), hook_post = new();

    public TinyMlp(int dModel, int hidden) : base(nameof(TinyMlp))
    {
        fc_in = nn.Linear(dModel, hidden);
        fc_out = nn.Linear(hidden, dModel);
        RegisterComponents();
    }

    public Linear In => fc_in;
    public Linear Out => fc_out;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var pre = hook_pre.call(fc_in.call(x));
        var post = hook_post.call(nn.functional.gelu(pre));
        return fc_out.call(post).MoveToOuterDisposeScope();
    }
}
