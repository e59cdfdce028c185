using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Data;

/// <summary>
/// Token sequences with next-token labels, owned by this batch (dispose it): Tokens [N, T] int64 and Labels [N, T]
/// int64 where Labels[n, t] is the token the model should predict <i>after</i> reading Tokens[n, ≤ t] (the loss is
/// cross_entropy(logits[n, t], Labels[n, t])), and <see cref="Ignore"/> = −100 where no prediction is scored.
/// </summary>
public class TokenBatch : IDisposable
{
    /// <summary>The label of unscored positions (PyTorch's cross-entropy ignore_index).</summary>
    public const long Ignore = -100;

    public TokenBatch(Tensor tokens, Tensor labels)
    {
        Tokens = tokens.DetachFromDisposeScope();
        Labels = labels.DetachFromDisposeScope();
    }

    public Tensor Tokens { get; }
    public Tensor Labels { get; }
    public long Count => Tokens.shape[0];
    public long Length => Tokens.shape[1];

    /// <summary>Mean cross-entropy over scored positions for logits [N, T, V] (in the caller's scope).</summary>
    public Tensor Loss(Tensor logits)
    {
        Guard.Rank(logits, 3, nameof(logits), "N, T, V");
        using var scope = NewDisposeScope();
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[2]), Labels.reshape(-1), ignore_index: Ignore).MoveToOuterDisposeScope();
    }

    /// <summary>Share of scored positions where argmax(logits) equals the label.</summary>
    public double Accuracy(Tensor logits)
    {
        Guard.Rank(logits, 3, nameof(logits), "N, T, V");
        using var scope = NewDisposeScope();
        var scored = Labels.ne(Ignore);
        return logits.argmax(-1).eq(Labels).logical_and(scored).sum().item<long>() / (double)Math.Max(1, scored.sum().item<long>());
    }

    /// <summary>A tensor [N, T] from a row-major array, on <paramref name="device"/> (in the caller's scope).</summary>
    internal static Tensor Make(long[] data, long n, long t, Device? device) => torch.tensor(data, new[] { n, t }, device: device);

    public virtual void Dispose()
    {
        Tokens.Dispose();
        Labels.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>Seeded sampling helpers shared by the tasks (System.Random: the same seed gives the same data on any device).</summary>
internal static class Sampling
{
    /// <summary><paramref name="count"/> distinct integers from [lo, hi), in draw order.</summary>
    public static long[] Distinct(Random rng, long lo, long hi, int count)
    {
        var seen = new HashSet<long>();
        var result = new long[count];
        for (int i = 0; i < count; i++)
        {
            long v;
            do v = rng.NextInt64(lo, hi); while (!seen.Add(v));
            result[i] = v;
        }
        return result;
    }

    public static void Shuffle<T>(Random rng, T[] items)
    {
        for (int i = items.Length - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    public static void CheckCount(int count)
    {
        if (count <= 0) throw new ArgumentOutOfRangeException(nameof(count), count, "count must be positive.");
    }
}
