using static TorchSharp.torch;

namespace AttentionLab.Interp;

/// <summary>TransformerLens-style runs on any <see cref="IHookedModel"/>: with a cache, with hooks, and a hooks scope.</summary>
public static class HookedModel
{
    /// <summary>
    /// Runs the model once, capturing every hook point whose full name passes <paramref name="filter"/> (null = all).
    /// Returns the logits (in the caller's dispose scope) and a cache that owns detached clones — dispose it.
    /// </summary>
    public static (Tensor Logits, ActivationCache Cache) RunWithCache(this IHookedModel model, Tensor input, Func<string, bool>? filter = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var cache = new ActivationCache(model.LayerCount);
        try
        {
            using var hooks = model.Hooks(filter ?? (_ => true), (t, hp) => { cache.Store(hp.Name, t); return null; });
            return (model.Run(input), cache);
        }
        catch
        {
            cache.Dispose();
            throw;
        }
    }

    /// <summary>As <see cref="RunWithCache(IHookedModel, Tensor, Func{string, bool}?)"/>, capturing only the given full or short names.</summary>
    public static (Tensor Logits, ActivationCache Cache) RunWithCache(this IHookedModel model, Tensor input, IEnumerable<string> names)
    {
        ArgumentNullException.ThrowIfNull(names);
        var wanted = names.Select(n => ActName.Get(n)).ToHashSet();
        foreach (var n in wanted) CheckName(model, n, nameof(names));
        return model.RunWithCache(input, wanted.Contains);
    }

    /// <summary>
    /// Runs the model with the hooks attached, then removes them (also when the run throws). A hook's returned tensor replaces the activation.
    /// </summary>
    public static Tensor RunWithHooks(this IHookedModel model, Tensor input, params (string Name, Func<Tensor, HookPoint, Tensor?> Fn)[] hooks)
    {
        using var scope = model.Hooks(hooks);
        return model.Run(input);
    }

    /// <summary>Attaches hooks by full name until the returned scope is disposed: <c>using var h = model.Hooks(("blocks.0.attn.hook_z", fn));</c>.</summary>
    public static HookScope Hooks(this IHookedModel model, params (string Name, Func<Tensor, HookPoint, Tensor?> Fn)[] hooks)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(hooks);
        foreach (var (name, fn) in hooks)
        {
            CheckName(model, name, nameof(hooks));
            if (fn is null) throw new ArgumentException($"the hook for '{name}' is null.", nameof(hooks));
        }
        var scope = new HookScope();
        foreach (var (name, fn) in hooks) scope.Add(model.HookPoints[name].AddHook(fn));
        return scope;
    }

    /// <summary>Attaches <paramref name="fn"/> to every hook point whose full name passes <paramref name="filter"/>.</summary>
    public static HookScope Hooks(this IHookedModel model, Func<string, bool> filter, Func<Tensor, HookPoint, Tensor?> fn)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(filter);
        ArgumentNullException.ThrowIfNull(fn);
        var scope = new HookScope();
        try
        {
            foreach (var (name, point) in model.HookPoints)
                if (filter(name)) scope.Add(point.AddHook(fn));
            return scope;
        }
        catch
        {
            scope.Dispose();                                                            // a throwing filter leaves no hook behind
            throw;
        }
    }

    static void CheckName(IHookedModel model, string name, string argument)
    {
        if (name is null || !model.HookPoints.ContainsKey(name))
            throw new ArgumentException($"no hook point named '{name}'. Known: {string.Join(", ", model.HookPoints.Keys.Take(12))}, …", argument);
    }
}

/// <summary>Hooks attached by <c>model.Hooks(…)</c>; disposing removes all of them.</summary>
public sealed class HookScope : IDisposable
{
    readonly List<IDisposable> handles = new();
    internal void Add(IDisposable handle) => handles.Add(handle);
    /// <summary>Hooks attached.</summary>
    public int Count => handles.Count;
    public void Dispose()
    {
        foreach (var h in handles) h.Dispose();
        handles.Clear();
    }
}
