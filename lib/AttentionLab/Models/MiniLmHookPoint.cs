using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// An identity module marking a named activation of <see cref="MiniLm"/> (TransformerLens's HookPoint): y = x, unless a
/// hook returns a tensor, which then replaces the activation for the rest of the forward pass. Hooks fire only through
/// <c>.call(x)</c> (a TorchSharp forward hook dispatches to the ordered list).
/// </summary>
/// <remarks>
/// Interim: MiniLm's own copy until the shared <c>AttentionLab.Interp.HookPoint</c> lands; it has the same shape
/// (identity <c>nn.Module&lt;Tensor, Tensor&gt;</c>, <c>Name</c>, <c>AddHook(fn) → IDisposable</c>, <c>RemoveHooks</c>),
/// so the switch-over is a type rename. A hook that keeps a tensor must copy it out of the forward's dispose scopes
/// (<c>t.detach().clone().DetachFromDisposeScope()</c>) and dispose it later.
/// </remarks>
public sealed class MiniLmHookPoint : nn.Module<Tensor, Tensor>
{
    readonly List<(long Id, Func<Tensor, MiniLmHookPoint, Tensor?> Fn)> hooks = new();
    long nextId;

    public MiniLmHookPoint() : base(nameof(MiniLmHookPoint))
    {
        register_forward_hook((_, _, output) => Run(output)!);   // null keeps the output (TorchSharp semantics)
    }

    /// <summary>Full TransformerLens-style name, e.g. "blocks.0.attn.hook_pattern" (set by <see cref="MiniLm"/>).</summary>
    public string Name { get; internal set; } = "";

    /// <summary>Number of hooks attached now.</summary>
    public int HookCount => hooks.Count;

    public override Tensor forward(Tensor x) => x;

    /// <summary>Adds fn(activation, point): a returned tensor replaces the activation, null keeps it. Dispose the handle to remove it.</summary>
    public IDisposable AddHook(Func<Tensor, MiniLmHookPoint, Tensor?> fn)
    {
        ArgumentNullException.ThrowIfNull(fn);
        long id = nextId++;
        hooks.Add((id, fn));
        return new Handle(this, id);
    }

    /// <summary>Removes every hook on this point.</summary>
    public void RemoveHooks() => hooks.Clear();

    Tensor? Run(Tensor output)
    {
        if (hooks.Count == 0) return null;
        Tensor? replaced = null;
        foreach (var (_, fn) in hooks.ToArray())
        {
            var r = fn(replaced ?? output, this);
            if (r is not null) replaced = r;
        }
        return replaced;
    }

    sealed class Handle : IDisposable
    {
        MiniLmHookPoint? point;
        readonly long id;
        public Handle(MiniLmHookPoint point, long id) { this.point = point; this.id = id; }
        public void Dispose()
        {
            point?.hooks.RemoveAll(h => h.Id == id);
            point = null;
        }
    }
}
