using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// Causal multi-head self-attention on <see cref="ReferenceAttention"/>: x [B, T, d] → [B, T, d]. Streams one
/// token at a time with a <see cref="KvCache"/> (state grows linearly with t).
/// </summary>
public sealed class CausalSelfAttention : nn.Module<Tensor, Tensor>, IStreamingMixer
{
    readonly Linear qkv, proj;
    readonly int heads;

    public CausalSelfAttention(int dModel, int heads) : base(nameof(CausalSelfAttention))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        if (dModel % heads != 0) throw new ArgumentException($"dModel {dModel} must be a multiple of heads {heads}.", nameof(heads));
        this.heads = heads;
        qkv = nn.Linear(dModel, 3 * dModel);
        proj = nn.Linear(dModel, dModel);
        RegisterComponents();
    }

    /// <summary>A mixer factory for <see cref="TinyGpt"/>: one attention layer per block.</summary>
    public static Func<int, nn.Module<Tensor, Tensor>> Factory(TinyGptConfig config) =>
        _ => new CausalSelfAttention(config.DModel, config.Heads);

    public override Tensor forward(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], d = x.shape[2];
        var parts = qkv.call(x).view(b, t, 3, heads, d / heads).unbind(2);         // q, k, v [B, T, H, Dh]
        using var att = ReferenceAttention.Softmax(parts[0], parts[1], parts[2], causal: true);
        return proj.call(att.Output.reshape(b, t, d)).MoveToOuterDisposeScope();
    }

    public MixerState NewState(long batch, ScalarType dtype, Device device)
    {
        long d = proj.weight!.shape[0];
        return new KvState(new KvCache(batch, heads, d / heads, d / heads, dtype, device));
    }

    public Tensor Step(Tensor xT, MixerState state)
    {
        Guard.Rank(xT, 2, nameof(xT), "B, d");
        if (state is not KvState kv) throw new ArgumentException($"state must come from this mixer's NewState, got {state?.GetType().Name}.", nameof(state));
        using var scope = NewDisposeScope();
        long b = xT.shape[0], d = xT.shape[1];
        var parts = qkv.call(xT).view(b, 1, 3, heads, d / heads).unbind(2);        // [B, 1, H, Dh] each
        kv.Cache.Append(parts[1], parts[2]);
        kv.Advance();
        using var att = ReferenceAttention.Softmax(parts[0], kv.Cache.Keys, kv.Cache.Values, causal: true);
        return proj.call(att.Output.reshape(b, d)).MoveToOuterDisposeScope();
    }

    /// <summary>The KV cache of one attention layer.</summary>
    public sealed class KvState : MixerState
    {
        public KvState(KvCache cache) => Cache = cache;
        public KvCache Cache { get; }
        public override long Bytes => Cache.Bytes;
        public override void Dispose() => Cache.Dispose();
    }
}
