using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// Linear attention one token at a time, for decoding: holds the state (S, z), the position and the settings, and
/// reproduces <see cref="LinearAttention"/>'s causal output step by step at a constant cost per token. A model's
/// <c>MixerState</c> (Models/) wraps one of these per layer to implement <c>IStreamingMixer</c>.
/// </summary>
/// <remarks>
/// Step: S_t = λ S_{t−1} + φ(k_t) v_tᵀ, z_t = λ z_{t−1} + φ(k_t), o_t = φ(q_t)ᵀ S_t (/ (φ(q_t)·z_t + ε)) — the very
/// function the recurrent form loops over. With a per-token gate g_t (passed to each <see cref="Step"/> as [B, H], to
/// <see cref="Prefill"/> as [B, T, H]) the step's decay is λ_t = e^{g_t} — times the stream's per-head λ_h when it has one
/// (log-decays add: e^{log λ_h + g_t}). Decoding is inference: the stream stores detached states (no graph grows across
/// steps), like the KV caches.
/// </remarks>
public sealed class LinearAttentionStream : IDisposable
{
    readonly Tensor? logDecay;   // [H] in the accumulation dtype, detached; null: no decay
    readonly Tensor? lambda;     // λ = exp(log λ) as [1, H, 1, 1], computed once for the steps
    LinearState state;

    /// <param name="batch">B.</param>
    /// <param name="heads">H.</param>
    /// <param name="keyDim">D of q and k (the feature map's input).</param>
    /// <param name="valueDim">Dv.</param>
    /// <param name="dtype">dtype of the q, k, v the stream will take (the state uses its accumulation dtype).</param>
    /// <param name="device">device of the inputs; default CPU.</param>
    /// <param name="logDecay">log λ per head [H] (≤ 0), or null; copied.</param>
    /// <param name="options">feature map, normalisation, ε, q scale.</param>
    /// <param name="h0">a start state (copied, detached), e.g. a prefill's <see cref="LinearAttentionResult.FinalState"/>; null: zero.</param>
    public LinearAttentionStream(long batch, long heads, long keyDim, long valueDim, ScalarType dtype = ScalarType.Float32, Device? device = null,
        Tensor? logDecay = null, LinearAttentionOptions? options = null, LinearState? h0 = null)
    {
        Guard.Positive(batch, nameof(batch)); Guard.Positive(heads, nameof(heads));
        Guard.Positive(keyDim, nameof(keyDim)); Guard.Positive(valueDim, nameof(valueDim));
        Options = options ?? LinearAttentionOptions.Default;
        Batch = batch; Heads = heads; KeyDim = keyDim; ValueDim = valueDim; Dtype = dtype;
        Device = device ?? CPU;
        try { FeatureDim = Options.FeatureMap.OutputDim(keyDim); }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"keyDim {keyDim} does not fit the feature map {Options.FeatureMap.Name}: {e.Message}", nameof(keyDim), e);
        }
        using var scope = NewDisposeScope();
        var probe = torch.empty(new[] { batch, 1, heads, keyDim }, dtype: dtype, device: Device);   // shapes for the guards
        Guard.FloatingPoint(probe, nameof(dtype));
        LinearAttention.ValidateLogDecay(logDecay, probe);
        var acc = LinearAttention.AccumulationDtype(dtype);
        this.logDecay = logDecay?.detach().to(acc).clamp_min(LinearAttentionForms.LogDecayFloor).DetachFromDisposeScope();
        lambda = this.logDecay?.exp().view(1, -1, 1, 1).DetachFromDisposeScope();
        if (h0 is not null)
        {
            LinearAttention.ValidateState(h0, nameof(h0), batch, heads, FeatureDim, valueDim, Options.Normalize, probe);
            state = new LinearState(h0.S.detach().to(acc).clone(), h0.Z?.detach().to(acc).clone()).DetachFromDisposeScope();
        }
        else
            state = LinearState.Zeros(batch, heads, FeatureDim, valueDim, Options.Normalize, dtype, Device).DetachFromDisposeScope();
    }

    public long Batch { get; }
    public long Heads { get; }
    public long KeyDim { get; }
    public long ValueDim { get; }
    /// <summary>F: the feature map's output dimension.</summary>
    public long FeatureDim { get; }
    /// <summary>dtype of the inputs and outputs.</summary>
    public ScalarType Dtype { get; }
    public Device Device { get; }
    public LinearAttentionOptions Options { get; }
    /// <summary>Tokens consumed so far.</summary>
    public long Position { get; private set; }
    /// <summary>The current state (owned by the stream; replaced by every step — clone it to keep it).</summary>
    public LinearState State => state;
    /// <summary>Bytes of the state: constant in the number of tokens (B·H·F·(Dv + [normalised]) accumulation-dtype values).</summary>
    public long Bytes => state.Bytes;

    /// <summary>
    /// One token: q_t, k_t [B, H, D], v_t [B, H, Dv] → o_t [B, H, Dv] (in <see cref="Dtype"/>). <paramref name="gate"/>:
    /// this token's gate g_t [B, H] (≤ 0, not NaN, −∞ resets), or null for the stream's per-head decay alone.
    /// </summary>
    public Tensor Step(Tensor q, Tensor k, Tensor v, Tensor? gate = null)
    {
        Guard.Rank(q, 3, nameof(q), "B, H, D");
        Guard.Rank(k, 3, nameof(k), "B, H, D");
        Guard.Rank(v, 3, nameof(v), "B, H, Dv");
        CheckInput(q, nameof(q), KeyDim); CheckInput(k, nameof(k), KeyDim); CheckInput(v, nameof(v), ValueDim);
        if (gate is not null)
        {
            Guard.Rank(gate, 2, nameof(gate), "B, H (this token's gate)");
            if (gate.shape[0] != Batch || gate.shape[1] != Heads)
                throw new ArgumentException($"{nameof(gate)} {Guard.ShapeText(gate)} must be [B, H] = [{Batch}, {Heads}].", nameof(gate));
            LinearAttention.CheckGateValues(gate, q, nameof(gate));
        }
        using var scope = NewDisposeScope();
        var acc = state.S.dtype;
        Tensor Acc(Tensor x) => x.dtype == acc ? x : x.to(acc);                           // no op when the dtypes agree
        var qa = Acc(q);
        if (Options.Scale != 1.0) qa = qa * Options.Scale;                              // q ← scale·q
        var qf = Options.FeatureMap.Apply(qa);                                          // φ(q_t) [B, H, F]
        var kf = Options.FeatureMap.Apply(Acc(k));                                      // φ(k_t)
        var decay = gate is null ? lambda : StepGate(Acc(gate));                        // λ_h, or e^{log λ_h + g_t} [B, H, 1, 1]
        var (o, s, z) = LinearAttentionForms.Step(qf, kf, Acc(v), decay, state.S, state.Z, Options.Eps);
        var next = new LinearState(s.detach(), z?.detach()).DetachFromDisposeScope();
        state.Dispose();
        state = next;
        Position++;
        return (o.dtype == Dtype ? o : o.to(Dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Several tokens at once (a prompt): q, k [B, T, H, D], v [B, T, H, Dv] → o [B, T, H, Dv] by the chunked form,
    /// starting from and then replacing the current state. <paramref name="gate"/>: the tokens' gates g [B, T, H], or null.
    /// </summary>
    public Tensor Prefill(Tensor q, Tensor k, Tensor v, Tensor? gate = null)
    {
        Guard.Rank(q, 4, nameof(q), "B, T, H, D");
        CheckInput(q, nameof(q), KeyDim);
        if (gate is not null)
        {
            Guard.Rank(gate, 3, nameof(gate), "B, T, H");
            LinearAttention.ValidateDecay(gate, q);                                     // shape [B, T, H], ≤ 0, not NaN
        }
        using var scope = NewDisposeScope();
        var decay = gate is null ? logDecay
            : logDecay is null ? gate : gate.to(logDecay.dtype) + logDecay.view(1, 1, -1);   // log λ_h + g_t
        using var result = LinearAttention.Chunked(q, k, v, decay, state, Options);
        var next = new LinearState(result.FinalState.S.detach().clone(), result.FinalState.Z?.detach().clone()).DetachFromDisposeScope();
        state.Dispose();
        state = next;
        Position += q.size(1);
        return result.Output.clone().MoveToOuterDisposeScope();
    }

    /// <summary>e^{log λ_h + g_t} (e^{g_t} without a per-head decay) for g_t [B, H] in the accumulation dtype → [B, H, 1, 1].</summary>
    Tensor StepGate(Tensor gate)
    {
        var sum = logDecay is null ? gate : gate + logDecay.view(1, -1);
        return sum.clamp_min(LinearAttentionForms.LogDecayFloor).exp().view(Batch, Heads, 1, 1);
    }

    void CheckInput(Tensor x, string name, long lastDim)
    {
        if (x.size(0) != Batch || x.size(-2) != Heads || x.size(-1) != lastDim)
            throw new ArgumentException($"{name} {Guard.ShapeText(x)} must have batch {Batch}, {Heads} heads and last dim {lastDim}.", name);
        if (x.dtype != Dtype) throw new ArgumentException($"{name} has dtype {x.dtype} but the stream takes {Dtype}.", name);
        if (x.device_type != Device.type || x.device_index != Device.index)
            throw new ArgumentException($"{name} is on {x.device} but the stream is on {Device}.", name);
    }

    public void Dispose()
    {
        state.Dispose();
        logDecay?.Dispose();
        lambda?.Dispose();
    }
}
