using static TorchSharp.torch;

namespace AttentionLab.Interp;

/// <summary>
/// An identity module marking a named activation (TransformerLens's HookPoint). y = x, unless a forward hook
/// returns a tensor, which then replaces the activation for the rest of the forward pass. Hooks fire only when the
/// model calls the point with <c>.call(x)</c> (TorchSharp semantics), never through <c>forward</c>.
/// </summary>
public sealed class HookPoint : nn.Module<Tensor, Tensor>
{
    readonly List<(long Id, Func<Tensor, HookPoint, Tensor?> Fn)> hooks = new();
    long nextId;

    public HookPoint() : base(nameof(HookPoint))
    {
        // One TorchSharp forward hook dispatches to our ordered list: hooks run in the order they were added.
        register_forward_hook((_, _, output) => Run(output)!);
    }

    /// <summary>The full TransformerLens-style name (e.g. "blocks.0.attn.hook_pattern"), set by the root model.</summary>
    public string Name { get; set; } = "";

    /// <summary>Number of hooks attached now.</summary>
    public int HookCount => hooks.Count;

    /// <summary>y = x (hooks run in <c>call</c>).</summary>
    public override Tensor forward(Tensor x) => x;

    /// <summary>
    /// Adds a forward hook fn(activation, this): returning a tensor replaces the activation, null keeps it.
    /// Dispose the handle to remove the hook. A hook that keeps a tensor must <c>detach().clone()</c> it out of the scope.
    /// </summary>
    public IDisposable AddHook(Func<Tensor, HookPoint, Tensor?> fn)
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
        HookPoint? point;
        readonly long id;
        public Handle(HookPoint point, long id) { this.point = point; this.id = id; }
        public void Dispose()
        {
            point?.hooks.RemoveAll(h => h.Id == id);
            point = null;
        }
    }
}
