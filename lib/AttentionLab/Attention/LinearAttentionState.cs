using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Attention;

/// <summary>
/// The recurrent state of linear attention after some prefix of the sequence: S = Σ_s λ^{t−s} φ(k_s) v_sᵀ
/// [B, H, F, Dv] and, for the normalised form, z = Σ_s λ^{t−s} φ(k_s) [B, H, F]. Held in the accumulation dtype
/// (float32 for float16/bfloat16 inputs). Owns its tensors.
/// </summary>
public sealed class LinearState : IDisposable
{
    /// <param name="s">S [B, H, F, Dv].</param>
    /// <param name="z">z [B, H, F], or null when the attention is not normalised.</param>
    public LinearState(Tensor s, Tensor? z = null)
    {
        Guard.Rank(s, 4, nameof(s), "B, H, F, Dv");
        if (z is not null)
        {
            Guard.Rank(z, 3, nameof(z), "B, H, F");
            if (!z.shape.SequenceEqual(s.shape[..3]))
                throw new ArgumentException($"z {Guard.ShapeText(z)} must be S's [B, H, F] (S is {Guard.ShapeText(s)}).", nameof(z));
            Guard.SameDtype(s, nameof(s), z, nameof(z));
            Guard.SameDevice(s, nameof(s), z, nameof(z));
        }
        S = s; Z = z;
    }

    /// <summary>S = Σ_s λ^{t−s} φ(k_s) v_sᵀ: [B, H, F, Dv].</summary>
    public Tensor S { get; }
    /// <summary>z = Σ_s λ^{t−s} φ(k_s): [B, H, F]; null for unnormalised attention.</summary>
    public Tensor? Z { get; }

    /// <summary>Bytes held now (S and z).</summary>
    public long Bytes => S.NumberOfElements * S.ElementSize + (Z is null ? 0 : Z.NumberOfElements * Z.ElementSize);

    /// <summary>
    /// Bytes of a state for <paramref name="batch"/> sequences: B·H·F·(Dv + [normalised]) elements of the accumulation
    /// dtype of <paramref name="inputDtype"/> (the recurrent memory the recall-vs-state plots put on their x axis).
    /// </summary>
    public static long BytesFor(long batch, long heads, long featureDim, long valueDim, bool normalize, ScalarType inputDtype = ScalarType.Float32)
    {
        Guard.Positive(batch, nameof(batch)); Guard.Positive(heads, nameof(heads));
        Guard.Positive(featureDim, nameof(featureDim)); Guard.Positive(valueDim, nameof(valueDim));
        long elementSize = LinearAttention.AccumulationDtype(inputDtype) == ScalarType.Float64 ? 8 : 4;
        return batch * heads * featureDim * (valueDim + (normalize ? 1 : 0)) * elementSize;
    }

    /// <summary>S = 0 (and z = 0 when <paramref name="normalize"/>) in the accumulation dtype of <paramref name="inputDtype"/>.</summary>
    public static LinearState Zeros(long batch, long heads, long featureDim, long valueDim, bool normalize,
        ScalarType inputDtype = ScalarType.Float32, Device? device = null)
    {
        Guard.Positive(batch, nameof(batch)); Guard.Positive(heads, nameof(heads));
        Guard.Positive(featureDim, nameof(featureDim)); Guard.Positive(valueDim, nameof(valueDim));
        var acc = LinearAttention.AccumulationDtype(inputDtype);
        using var scope = NewDisposeScope();
        var s = torch.zeros(new[] { batch, heads, featureDim, valueDim }, dtype: acc, device: device);
        var z = normalize ? torch.zeros(new[] { batch, heads, featureDim }, dtype: acc, device: device) : null;
        return new LinearState(s, z).MoveToOuterDisposeScope();
    }

    /// <summary>Moves S and z out of the current dispose scope.</summary>
    public LinearState MoveToOuterDisposeScope()
    {
        S.MoveToOuterDisposeScope(); Z?.MoveToOuterDisposeScope();
        return this;
    }

    /// <summary>Takes S and z out of every dispose scope: the caller (a long-lived holder) disposes them.</summary>
    public LinearState DetachFromDisposeScope()
    {
        S.DetachFromDisposeScope(); Z?.DetachFromDisposeScope();
        return this;
    }

    public void Dispose()
    {
        S.Dispose(); Z?.Dispose();
    }
}

/// <summary>What a linear-attention form returns: the output [B, T, H, Dv] (input dtype) and the final state hT.</summary>
public sealed class LinearAttentionResult : IDisposable
{
    public LinearAttentionResult(Tensor output, LinearState finalState)
    {
        Output = output; FinalState = finalState;
    }

    /// <summary>o [B, T, H, Dv], in the input dtype.</summary>
    public Tensor Output { get; }
    /// <summary>hT: the state after the last token (accumulation dtype); pass it as h0 to continue the sequence.</summary>
    public LinearState FinalState { get; }

    public void Deconstruct(out Tensor output, out LinearState finalState)
    {
        output = Output; finalState = FinalState;
    }

    /// <summary>Moves the output and the state out of the current dispose scope.</summary>
    public LinearAttentionResult MoveToOuterDisposeScope()
    {
        Output.MoveToOuterDisposeScope(); FinalState.MoveToOuterDisposeScope();
        return this;
    }

    public void Dispose()
    {
        Output.Dispose(); FinalState.Dispose();
    }
}

/// <summary>The non-tensor settings shared by every linear-attention form (tensors — log-decay, h0 — are arguments).</summary>
public sealed record LinearAttentionOptions
{
    readonly int chunkSize = 64;
    readonly double eps = 1e-6;
    readonly double scale = 1.0;

    /// <summary>φ applied to q and k; default <see cref="FeatureMaps.Identity"/>.</summary>
    public IFeatureMap FeatureMap { get; init; } = FeatureMaps.Identity;

    /// <summary>Divide by the causal cumulative denominator: o_t = φ(q_t)ᵀS_t / (φ(q_t)ᵀz_t + ε). Default false.</summary>
    public bool Normalize { get; init; }

    /// <summary>ε of the normalised form (≥ 0, finite); default 1e-6 (fla; HazyResearch/based uses 1e-12).</summary>
    public double Eps
    {
        get => eps;
        init => eps = double.IsFinite(value) && value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(Eps), value, "Eps must be finite and ≥ 0.");
    }

    /// <summary>q ← scale·q before φ (a temperature; for the identity map a plain output scale). Default 1, finite.</summary>
    public double Scale
    {
        get => scale;
        init => scale = double.IsFinite(value) ? value : throw new ArgumentOutOfRangeException(nameof(Scale), value, "Scale must be finite.");
    }

    /// <summary>Chunk length of <see cref="LinearAttention.Chunked"/> (&gt; 0; need not divide T). Ignored by the other forms. Default 64.</summary>
    public int ChunkSize
    {
        get => chunkSize;
        init => chunkSize = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(ChunkSize), value, "ChunkSize must be positive.");
    }

    /// <summary>Identity map, unnormalised, scale 1, chunk 64.</summary>
    public static LinearAttentionOptions Default { get; } = new();
}
