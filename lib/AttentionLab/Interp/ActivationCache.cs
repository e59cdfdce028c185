using static TorchSharp.torch;

namespace AttentionLab.Interp;

/// <summary>
/// Activations captured by <see cref="HookedModel.RunWithCache(IHookedModel, Tensor, Func{string, bool}?)"/>: detached
/// clones owned by this cache (outside every dispose scope) and freed by <see cref="Dispose"/>. Look-ups return the
/// owned tensor — clone it to keep it past the cache. <c>cache["pattern", -1]</c> is the last layer's pattern.
/// </summary>
public sealed class ActivationCache : IDisposable
{
    readonly Dictionary<string, Tensor> store = new();
    bool disposed;

    public ActivationCache(int layerCount) => LayerCount = layerCount;

    /// <summary>Blocks of the model that filled this cache (negative layers count back from it).</summary>
    public int LayerCount { get; }
    /// <summary>Full names captured, in forward order.</summary>
    public IReadOnlyCollection<string> Names => store.Keys;
    public int Count => store.Count;
    public bool Contains(string name) => store.ContainsKey(ActName.Get(name));

    /// <summary>By full name ("blocks.0.attn.hook_pattern") or a layer-free short name ("embed", "normalized").</summary>
    public Tensor this[string name] => Get(ActName.Get(name), nameof(name));

    /// <summary>By short name and layer, e.g. ("pattern", 0), ("resid_post", -1), ("q", 1).</summary>
    public Tensor this[string name, int layer] => Get(ActName.Get(name, Resolve(layer)), nameof(name));

    /// <summary>By short name, layer and layer type, e.g. ("normalized", 0, "ln1").</summary>
    public Tensor this[string name, int layer, string layerType] => Get(ActName.Get(name, Resolve(layer), layerType), nameof(name));

    /// <summary>Stores a detached clone of <paramref name="activation"/> under <paramref name="name"/> (replacing an older one).</summary>
    public void Store(string name, Tensor activation)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var copy = activation.detach().clone().DetachFromDisposeScope();
        if (store.Remove(name, out var old)) old.Dispose();
        store[name] = copy;
    }

    int Resolve(int layer)
    {
        int l = layer < 0 ? layer + LayerCount : layer;
        if (l < 0 || l >= LayerCount) throw new ArgumentOutOfRangeException(nameof(layer), layer, $"layer must be in [−{LayerCount}, {LayerCount}).");
        return l;
    }

    Tensor Get(string full, string argument)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (store.TryGetValue(full, out var t)) return t;
        throw new ArgumentException(
            $"'{full}' is not in the cache (captured: {string.Join(", ", store.Keys.Take(8))}{(store.Count > 8 ? ", …" : "")}).", argument);
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        foreach (var t in store.Values) t.Dispose();
        store.Clear();
    }
}
