using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Interp;

/// <summary>Built-in detection patterns (TransformerLens head_detector).</summary>
public enum HeadPattern
{
    /// <summary>P_ij = 1 when j = i − 1.</summary>
    PreviousToken,
    /// <summary>P_ij = 1 when j &lt; i and x_j = x_i (an earlier copy of the current token).</summary>
    DuplicateToken,
    /// <summary>P_ij = 1 when 0 &lt; j ≤ i and x_{j−1} = x_i (the token after an earlier copy of the current token).</summary>
    Induction,
}

/// <summary>How a head's pattern A is compared with a detection pattern P.</summary>
public enum DetectionMetric
{
    /// <summary>Σ A⊙P / Σ A: the share of attention mass on the detection pattern (P ∈ {0,1}).</summary>
    Mul,
    /// <summary>1 − T · mean|A − P| (TransformerLens "abs", without its rounding to 3 decimals).</summary>
    Abs,
}

/// <summary>
/// TransformerLens-style head detection: run the model, read every layer's hook_pattern [B, H, T, T], and score each
/// head against a detection pattern; per-sequence scores are averaged over the batch → [L, H].
/// </summary>
public static class HeadDetector
{
    /// <summary>Scores [L, H] of every head for a built-in pattern on tokens [B, T] (or [T]).</summary>
    public static Tensor Detect(IHookedModel model, Tensor tokens, HeadPattern kind, DetectionMetric metric = DetectionMetric.Mul,
        bool excludeBos = false, bool excludeCurrentToken = false)
    {
        using var scope = NewDisposeScope();
        var batch = Batched(tokens);
        return Detect(model, batch, DetectionPattern(batch, kind), metric, excludeBos, excludeCurrentToken).MoveToOuterDisposeScope();
    }

    /// <summary>Scores [L, H] of every head for a custom detection pattern [T, T] (or per sequence [B, T, T]).</summary>
    public static Tensor Detect(IHookedModel model, Tensor tokens, Tensor detectionPattern, DetectionMetric metric = DetectionMetric.Mul,
        bool excludeBos = false, bool excludeCurrentToken = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        Guard.NotNull(detectionPattern, nameof(detectionPattern));
        using var scope = NewDisposeScope();
        var batch = Batched(tokens);
        using var noGrad = torch.no_grad();
        var (logits, cache) = model.RunWithCache(batch, name => name.EndsWith("attn.hook_pattern", StringComparison.Ordinal));
        using (cache)
        {
            var rows = Enumerable.Range(0, model.LayerCount)
                .Select(l => Score(cache["pattern", l], detectionPattern.to(batch.device), metric, excludeBos, excludeCurrentToken)).ToArray();
            return torch.stack(rows).MoveToOuterDisposeScope();
        }
    }

    /// <summary>
    /// Scores [H] of patterns [B, H, T, T] against P ([T, T] or [B, T, T]): per (b, h) Σ A⊙P / Σ A (Mul) or
    /// 1 − T·mean|A − P| (Abs), after zeroing column 0 (excludeBos) and the diagonal (excludeCurrentToken); mean over b.
    /// </summary>
    public static Tensor Score(Tensor patterns, Tensor detectionPattern, DetectionMetric metric = DetectionMetric.Mul,
        bool excludeBos = false, bool excludeCurrentToken = false)
    {
        Guard.Rank(patterns, 4, nameof(patterns), "B, H, T, T");
        Guard.NotNull(detectionPattern, nameof(detectionPattern));
        long b = patterns.shape[0], t = patterns.shape[2];
        if (patterns.shape[3] != t) throw new ArgumentException($"patterns must be square [B, H, T, T], got {Guard.ShapeText(patterns)}.", nameof(patterns));
        bool shared = detectionPattern.dim() == 2 && detectionPattern.shape[0] == t && detectionPattern.shape[1] == t;
        bool perSeq = detectionPattern.dim() == 3 && detectionPattern.shape[0] == b && detectionPattern.shape[1] == t && detectionPattern.shape[2] == t;
        if (!shared && !perSeq)
            throw new ArgumentException(
                $"detectionPattern must be [T, T] or [B, T, T] with B = {b}, T = {t}; got {Guard.ShapeText(detectionPattern)}.", nameof(detectionPattern));
        Guard.SameDevice(patterns, nameof(patterns), detectionPattern, nameof(detectionPattern));
        using var scope = NewDisposeScope();
        var a = patterns.to(ScalarType.Float64);
        var p = (shared ? detectionPattern.unsqueeze(0) : detectionPattern).unsqueeze(1).to(ScalarType.Float64);   // [B|1, 1, T, T]
        var keep = torch.ones(t, t, dtype: ScalarType.Float64, device: patterns.device);
        if (excludeBos) keep.select(1, 0).fill_(0);
        if (excludeCurrentToken) keep = keep * (1 - torch.eye(t, dtype: ScalarType.Float64, device: patterns.device));
        Tensor perHead;
        if (metric == DetectionMetric.Mul)
        {
            var masked = a * keep;
            perHead = (masked * p).sum(new long[] { -2, -1 }) / masked.sum(new long[] { -2, -1 });   // Σ A⊙P / Σ A
        }
        else if (metric == DetectionMetric.Abs)
            perHead = 1 - ((a - p).abs() * keep).mean(new long[] { -2, -1 }) * t;                  // 1 − T·mean|A − P|
        else throw new ArgumentException($"unknown metric {metric}.", nameof(metric));
        return perHead.mean(new long[] { 0 }).to(patterns.dtype).MoveToOuterDisposeScope();     // mean over batch → [H]
    }

    /// <summary>The 0/1 detection pattern [B, T, T] of <paramref name="kind"/> for tokens [B, T] (lower triangular).</summary>
    public static Tensor DetectionPattern(Tensor tokens, HeadPattern kind)
    {
        using var scope = NewDisposeScope();
        var x = Batched(tokens);
        long b = x.shape[0], t = x.shape[1];
        var strictlyLower = torch.ones(t, t, device: x.device).tril(-1);
        var duplicate = x.unsqueeze(2).eq(x.unsqueeze(1)).to(ScalarType.Float32) * strictlyLower;   // x_j = x_i, j < i
        Tensor pattern = kind switch
        {
            HeadPattern.PreviousToken => torch.eye(t, device: x.device).roll(1, 0).tril(-1).expand(b, t, t).contiguous(),   // j = i − 1
            HeadPattern.DuplicateToken => duplicate,
            // shift right by one
            HeadPattern.Induction => torch.cat(new[] { torch.zeros(b, t, 1, device: x.device), duplicate.narrow(2, 0, t - 1) }, 2).tril(),
            _ => throw new ArgumentException($"unknown pattern kind {kind}.", nameof(kind)),
        };
        return pattern.MoveToOuterDisposeScope();
    }

    static Tensor Batched(Tensor tokens)
    {
        Guard.NotNull(tokens, nameof(tokens));
        if (tokens.dim() == 1) return tokens.unsqueeze(0);
        if (tokens.dim() != 2) throw new ArgumentException($"tokens must be [T] or [B, T], got {Guard.ShapeText(tokens)}.", nameof(tokens));
        if (tokens.shape[1] < 2) throw new ArgumentException($"tokens need T ≥ 2, got {Guard.ShapeText(tokens)}.", nameof(tokens));
        return tokens;
    }
}
