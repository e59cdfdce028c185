using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.MemoryReweaving;

/// <summary>
/// The naive twin of <see cref="MemoryReweavingOps.Read"/> ([ours], spec §2): a token loop that keeps each layer's buffer as an
/// explicit FIFO queue (a token enters when it leaves the window of W keys; the oldest leaves once S are held) and attends over
/// what the queue holds. Float64-capable, never fast.
/// </summary>
public static class MemoryReweavingNaive
{
    /// <summary>m [B, T, H, Dv] from q [B, T, H, D], k^ℓ, v^ℓ per source layer and w_λ [|𝓛|], token by token.</summary>
    public static Tensor Read(Tensor q, IReadOnlyList<Tensor> keys, IReadOnlyList<Tensor> values, Tensor lambdaLogits, int window, int capacity)
    {
        MemoryReweavingOps.Validate(q, keys, values, lambdaLogits, window, capacity);
        using var scope = NewDisposeScope();
        long b = q.size(0), t = q.size(1), h = q.size(2), dv = values[0].size(3);
        var lambda = lambdaLogits.softmax(0);
        var queue = new Queue<long>();
        var rows = new List<Tensor>();
        for (long i = 0; i < t; i++)
        {
            if (i - window >= 0)
            {
                queue.Enqueue(i - window);                                                // token i − W leaves the window, enters the buffer
                if (queue.Count > capacity) queue.Dequeue();                              // FIFO eviction at capacity S
            }
            var row = torch.zeros(new[] { b, h, dv }, dtype: q.dtype, device: q.device);
            var slots = torch.tensor(queue.ToArray(), dtype: ScalarType.Int64, device: q.device);   // may be empty: then the sums are 0
            var qi = q[.., (int)i];                                                       // [B, H, D]
            for (int l = 0; l < keys.Count; l++)
            {
                var kb = keys[l].index_select(1, slots);                                  // buffer keys [B, n, H, D]
                var vb = values[l].index_select(1, slots);                                // buffer values [B, n, H, Dv]
                var s = torch.einsum("bhd,bnhd->bhn", qi, kb) / Math.Sqrt(q.size(3));
                var p = s.softmax(-1);
                row = row + lambda[l] * torch.einsum("bhn,bnhd->bhd", p, vb);
            }
            rows.Add(row);
        }
        return torch.stack(rows, 1).MoveToOuterDisposeScope();                            // [B, T, H, Dv]
    }
}
