using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Hcam;

/// <summary>
/// The naive twin of <see cref="HcamAttention"/>: loops over batch, query and chunk, sorts the visible chunks' coarse scores on
/// the host, and computes each fine softmax one head at a time. Differentiable (autograd through the same scores), slow.
/// </summary>
public static class HcamNaive
{
    /// <summary>summary_m = (1/C) Σ_c k_{mC+c} for every complete chunk, one chunk at a time.</summary>
    public static Tensor Summaries(Tensor k, int chunkSize)
    {
        long m = k.size(1) / chunkSize;
        var rows = new List<Tensor>();
        for (long j = 0; j < m; j++)
        {
            var sum = k.select(1, j * chunkSize);
            for (int c = 1; c < chunkSize; c++) sum = sum + k.select(1, j * chunkSize + c);
            rows.Add(sum / chunkSize);
        }
        return rows.Count == 0 ? k.new_zeros(k.size(0), 0, k.size(2), k.size(3)) : torch.stack(rows, 1);
    }

    /// <summary>z [B, T, H, Dv] by the definition in <see cref="HcamAttention"/>'s remarks.</summary>
    public static Tensor Read(Tensor q, Tensor summaries, Tensor k, Tensor v, int chunkSize, int topK)
    {
        long b = q.size(0), t = q.size(1), h = q.size(2), d = q.size(3), m = summaries.size(1);
        double coarseScale = 1.0 / Math.Sqrt(h * d), fineScale = 1.0 / Math.Sqrt(d);
        var rows = new List<Tensor>();
        for (long bi = 0; bi < b; bi++)
            for (long ti = 0; ti < t; ti++)
            {
                var query = q[bi, ti];                                                   // [H, D]
                var visible = new List<(long Chunk, Tensor Score)>();
                for (long j = 0; j < m; j++)
                    if ((j + 1) * chunkSize <= ti)                                       // complete before t
                        visible.Add((j, (query * summaries[bi, j]).sum() * coarseScale));
                var chosen = visible.OrderByDescending(s => s.Score.item<double>()).Take(topK).ToList();
                var z = q.new_zeros(h, v.size(3)) + q.narrow(3, 0, 0).sum() + v.narrow(3, 0, 0).sum();   // 0, on the graph even with nothing to read
                if (chosen.Count > 0)
                {
                    var w = torch.stack(chosen.Select(s => s.Score).ToArray()).softmax(0L);   // over the chosen only
                    for (int i = 0; i < chosen.Count; i++)
                    {
                        var heads = new List<Tensor>();
                        for (long hi = 0; hi < h; hi++)
                        {
                            var keys = k.select(0, bi).narrow(0, chosen[i].Chunk * chunkSize, chunkSize).select(1, hi);   // [C, D]
                            var vals = v.select(0, bi).narrow(0, chosen[i].Chunk * chunkSize, chunkSize).select(1, hi);   // [C, Dv]
                            var a = (keys * query.select(0, hi)).sum(1).mul(fineScale).softmax(0L);
                            heads.Add((a.unsqueeze(1) * vals).sum(0L));
                        }
                        z = z + w[i] * torch.stack(heads);
                    }
                }
                rows.Add(z);
            }
        return torch.stack(rows).view(b, t, h, v.size(3));
    }
}
