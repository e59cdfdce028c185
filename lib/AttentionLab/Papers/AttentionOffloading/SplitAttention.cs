using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionOffloading;

/// <summary>
/// Decode attention split over several attention workers, the three ways Lamina can partition it: by request (batch
/// rows), by KV head, or by sequence chunk (merged exactly through the log-sum-exp). Each part runs
/// <see cref="ReferenceAttention.Softmax"/>; q attends every key it is given (the decode step, after k/v were appended).
/// Layout [B, T, H, D]; returns (o [B, Tq, Hq, Dv], LSE [B, Hq, Tq]) equal to the monolithic call.
/// </summary>
public static class SplitAttention
{
    /// <summary>Monolithic reference: (o, LSE) of softmax attention of q over all of k, v.</summary>
    public static (Tensor Output, Tensor LogSumExp) Monolithic(Tensor q, Tensor k, Tensor v)
    {
        using var scope = NewDisposeScope();
        using var r = ReferenceAttention.Softmax(q, k, v);
        return (r.Output.alias().MoveToOuterDisposeScope(), r.LogSumExp.alias().MoveToOuterDisposeScope());
    }

    /// <summary>Requests (batch rows) split into <paramref name="parts"/> contiguous groups, one per worker; results concatenated.</summary>
    public static (Tensor Output, Tensor LogSumExp) ByRequests(Tensor q, Tensor k, Tensor v, int parts)
    {
        ReferenceAttention.Validate(q, k, v);
        CheckParts(parts, q.shape[0], "batch rows", q);
        using var scope = NewDisposeScope();
        var results = Bounds(q.shape[0], parts)
            .Select(s => Monolithic(q.narrow(0, s.Start, s.Length), k.narrow(0, s.Start, s.Length), v.narrow(0, s.Start, s.Length))).ToList();
        return (torch.cat(results.Select(r => r.Output).ToArray(), 0).MoveToOuterDisposeScope(),
                torch.cat(results.Select(r => r.LogSumExp).ToArray(), 0).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// KV heads split into <paramref name="parts"/> contiguous groups; each worker also gets the query heads that share
    /// its KV heads (grouped-query attention), so no worker needs another's cache. Results concatenated over heads.
    /// </summary>
    public static (Tensor Output, Tensor LogSumExp) ByHeads(Tensor q, Tensor k, Tensor v, int parts)
    {
        ReferenceAttention.Validate(q, k, v);
        CheckParts(parts, k.shape[2], "KV heads", k);
        long group = q.shape[2] / k.shape[2];                                        // query heads per KV head
        using var scope = NewDisposeScope();
        var results = Bounds(k.shape[2], parts)
            .Select(s => Monolithic(q.narrow(2, s.Start * group, s.Length * group), k.narrow(2, s.Start, s.Length), v.narrow(2, s.Start, s.Length))).ToList();
        return (torch.cat(results.Select(r => r.Output).ToArray(), 2).MoveToOuterDisposeScope(),
                torch.cat(results.Select(r => r.LogSumExp).ToArray(), 1).MoveToOuterDisposeScope());
    }

    /// <summary>The cached tokens split into <paramref name="parts"/> contiguous chunks; partial results merged by <see cref="LseMerge"/>.</summary>
    public static (Tensor Output, Tensor LogSumExp) BySequence(Tensor q, Tensor k, Tensor v, int parts)
    {
        ReferenceAttention.Validate(q, k, v);
        CheckParts(parts, k.shape[1], "cached tokens", k);
        using var scope = NewDisposeScope();
        var results = Bounds(k.shape[1], parts).Select(s => Monolithic(q, k.narrow(1, s.Start, s.Length), v.narrow(1, s.Start, s.Length))).ToList();
        var (o, lse) = LseMerge.Combine(results);                                   // o = Σ_p exp(ℓ_p − ℓ) o_p
        return (o.MoveToOuterDisposeScope(), lse.MoveToOuterDisposeScope());
    }

    /// <summary>The wrong merge (plain mean of the chunk outputs), for the notebook's pitfall demo.</summary>
    public static Tensor BySequenceAveraged(Tensor q, Tensor k, Tensor v, int parts)
    {
        ReferenceAttention.Validate(q, k, v);
        CheckParts(parts, k.shape[1], "cached tokens", k);
        using var scope = NewDisposeScope();
        var outputs = Bounds(k.shape[1], parts).Select(s => Monolithic(q, k.narrow(1, s.Start, s.Length), v.narrow(1, s.Start, s.Length)).Output).ToArray();
        return torch.stack(outputs).mean(new long[] { 0 }).MoveToOuterDisposeScope();
    }

    /// <summary><paramref name="total"/> items in <paramref name="parts"/> contiguous near-equal ranges (the first ones one larger).</summary>
    internal static IEnumerable<(long Start, long Length)> Bounds(long total, int parts)
    {
        long start = 0;
        for (int p = 0; p < parts; p++)
        {
            long length = total / parts + (p < total % parts ? 1 : 0);
            yield return (start, length);
            start += length;
        }
    }

    static void CheckParts(int parts, long available, string what, Tensor t)
    {
        if (parts <= 0 || parts > available)
            throw new ArgumentException($"parts must be in [1, {available}] ({what} of {Guard.ShapeText(t)}), got {parts}.", nameof(parts));
    }
}
