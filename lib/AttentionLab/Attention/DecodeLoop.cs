using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// One decode step of a model: consumes token x_t [B] (int64) at position t and returns its output (logits [B, V]
/// or hidden state), calling <c>caches[layer].Attend(q, k, v)</c> in each attention layer.
/// </summary>
public delegate Tensor DecodeStepFunction(Tensor token, long position, DecodeCaches caches);

/// <summary>
/// The per-layer <see cref="PolicyKvCache"/>s of one decode run, created on first use with the policy the factory
/// gives for that layer. Owns them.
/// </summary>
public sealed class DecodeCaches : IDisposable
{
    readonly Func<int, IKvPolicy> policyFactory;
    readonly Func<int, Func<Tensor, Tensor, Tensor, AttentionResult>?>? attentionFactory;
    readonly SortedDictionary<int, PolicyKvCache> layers = new();

    /// <param name="policyFactory">layer → policy.</param>
    /// <param name="attentionFactory">layer → attention function (null: reference softmax), see <see cref="PolicyKvCache"/>.</param>
    public DecodeCaches(Func<int, IKvPolicy> policyFactory, Func<int, Func<Tensor, Tensor, Tensor, AttentionResult>?>? attentionFactory = null)
    {
        this.policyFactory = policyFactory ?? throw new ArgumentNullException(nameof(policyFactory));
        this.attentionFactory = attentionFactory;
    }

    /// <summary>The cache of <paramref name="layer"/>, created on first use.</summary>
    public PolicyKvCache this[int layer]
    {
        get
        {
            if (layer < 0) throw new ArgumentOutOfRangeException(nameof(layer), layer, "layer must be ≥ 0.");
            if (!layers.TryGetValue(layer, out var cache))
                layers[layer] = cache = new PolicyKvCache(policyFactory(layer), layer, attention: attentionFactory?.Invoke(layer));
            return cache;
        }
    }

    /// <summary>The caches created so far, by layer.</summary>
    public IReadOnlyCollection<PolicyKvCache> Layers => layers.Values;
    /// <summary>Bytes of kept keys and values over all layers.</summary>
    public long BytesHeld => layers.Values.Sum(c => c.BytesHeld);
    /// <summary>Every layer's statistics, ordered by step then layer.</summary>
    public DecodeTrace Trace => new(layers.Values.SelectMany(c => c.Trace).OrderBy(s => s.Step).ThenBy(s => s.Layer));

    public void Dispose()
    {
        foreach (var cache in layers.Values) cache.Dispose();
        layers.Clear();
    }
}

/// <summary>The outputs of a decode run, stacked over steps, and its statistics. Owns <see cref="Outputs"/>.</summary>
public sealed class DecodeRun : IDisposable
{
    public DecodeRun(Tensor outputs, Tensor tokens, DecodeTrace trace) { Outputs = outputs; Tokens = tokens; Trace = trace; }

    /// <summary>[B, T, …]: the step function's output at each step.</summary>
    public Tensor Outputs { get; }
    /// <summary>[B, T] int64: the tokens fed (for <see cref="DecodeLoop.Generate"/>: prompt then generated).</summary>
    public Tensor Tokens { get; }
    public DecodeTrace Trace { get; }

    public void Dispose() { Outputs.Dispose(); Tokens.Dispose(); }
}

/// <summary>
/// Token-by-token decoding with per-layer KV policies, for any model that exposes a per-step function. Runs under
/// no_grad with one dispose scope per step; the caches live for the run and are disposed at its end.
/// </summary>
public static class DecodeLoop
{
    /// <summary>
    /// Teacher-forced decode: feeds x_0 … x_{T−1} of <paramref name="tokens"/> [B, T] (int64) one at a time and stacks
    /// the step outputs into [B, T, …] (e.g. next-token logits for a streaming loss).
    /// </summary>
    public static DecodeRun Run(DecodeStepFunction step, Tensor tokens, Func<int, IKvPolicy> policyFactory,
        Func<int, Func<Tensor, Tensor, Tensor, AttentionResult>?>? attentionFactory = null)
    {
        ArgumentNullException.ThrowIfNull(step);
        CheckTokens(tokens, nameof(tokens));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var caches = new DecodeCaches(policyFactory, attentionFactory);
        var outputs = new List<Tensor>();
        for (long t = 0; t < tokens.shape[1]; t++)
            outputs.Add(Step(step, tokens.select(1, t), t, caches));
        var stacked = torch.stack(outputs, 1);
        return new DecodeRun(stacked.MoveToOuterDisposeScope(), tokens.detach().clone().MoveToOuterDisposeScope(), caches.Trace);
    }

    /// <summary>
    /// Greedy generation: feeds the prompt [B, P], then <paramref name="maxNew"/> tokens, each the argmax of the previous
    /// step's output (logits [B, V]). Outputs [B, P + maxNew − 1, V] (the last generated token is not fed back);
    /// Tokens [B, P + maxNew].
    /// </summary>
    public static DecodeRun Generate(DecodeStepFunction step, Tensor prompt, int maxNew, Func<int, IKvPolicy> policyFactory,
        Func<int, Func<Tensor, Tensor, Tensor, AttentionResult>?>? attentionFactory = null)
    {
        ArgumentNullException.ThrowIfNull(step);
        CheckTokens(prompt, nameof(prompt));
        if (maxNew <= 0) throw new ArgumentException($"maxNew must be positive, got {maxNew}.", nameof(maxNew));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var caches = new DecodeCaches(policyFactory, attentionFactory);
        var outputs = new List<Tensor>();
        var tokens = Enumerable.Range(0, (int)prompt.shape[1]).Select(t => prompt.select(1, t)).ToList();
        for (int t = 0; tokens.Count < prompt.shape[1] + maxNew; t++)
        {
            var o = Step(step, tokens[t], t, caches);
            if (o.dim() != 2) throw new InvalidOperationException($"Generate needs logits [B, V] from the step function, got {Guard.ShapeText(o)}.");
            outputs.Add(o);
            if (t + 1 >= prompt.shape[1]) tokens.Add(o.argmax(-1));                  // greedy: x_{t+1} = argmax logits_t
        }
        return new DecodeRun(torch.stack(outputs, 1).MoveToOuterDisposeScope(), torch.stack(tokens, 1).MoveToOuterDisposeScope(), caches.Trace);
    }

    static Tensor Step(DecodeStepFunction step, Tensor token, long t, DecodeCaches caches)
    {
        using var stepScope = NewDisposeScope();
        var output = step(token, t, caches) ?? throw new InvalidOperationException($"the step function returned null at step {t}.");
        return output.detach().MoveToOuterDisposeScope();
    }

    static void CheckTokens(Tensor tokens, string name)
    {
        Guard.Rank(tokens, 2, name, "B, T");
        if (tokens.dtype != ScalarType.Int64) throw new ArgumentException($"{name} must be int64 token ids, got {tokens.dtype}.", name);
        if (tokens.shape[1] == 0) throw new ArgumentException($"{name} is empty {Guard.ShapeText(tokens)}.", name);
    }
}
