using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Attention;

public class PagedKvCacheTests
{
    const long H = 2, D = 3, Dv = 4;

    /// <summary>
    /// Appends the same random schedule (sequence, chunk length) to a paged cache and to one contiguous
    /// <see cref="KvCache"/> per sequence; the two must hold identical bits.
    /// </summary>
    static void RunSchedule(int blockSize, int initialBlocks, IReadOnlyList<(int Seq, int Len)> schedule, int sequences)
    {
        using var scope = NewDisposeScope();
        using var paged = new PagedKvCache(sequences, H, D, Dv, blockSize, initialBlocks);
        var plain = Enumerable.Range(0, sequences).Select(_ => new KvCache(1, H, D, Dv, initialCapacity: 1)).ToArray();
        try
        {
            foreach (var (seq, len) in schedule)
            {
                var k = torch.randn(len, H, D); var v = torch.randn(len, H, Dv);
                paged.Append(seq, k, v);
                plain[seq].Append(k.unsqueeze(0), v.unsqueeze(0));
            }
            long perToken = H * (D + Dv) * 4;
            Assert.Equal(plain.Sum(c => c.Bytes), paged.Bytes);
            Assert.Equal(plain.Sum(c => (c.Length + blockSize - 1) / blockSize * blockSize * perToken), paged.AllocatedBytes);
            Assert.True(paged.PoolBytes >= paged.AllocatedBytes && paged.AllocatedBytes >= paged.Bytes);

            using var all = paged.Gather();
            long lmax = plain.Max(c => c.Length);
            Assert.Equal(new[] { sequences, lmax, H, D }, all.Keys.shape);
            Assert.Equal(plain.Select(c => c.Length).ToArray(), all.Lengths.data<long>().ToArray());
            for (int s = 0; s < sequences; s++)
            {
                long len = plain[s].Length;
                Assert.Equal(len, paged.Length(s));
                Assert.Equal((int)((len + blockSize - 1) / blockSize), paged.BlockTable(s).Count);
                var (k1, v1) = paged.Gather(s);
                Assert.True(TensorAssert.Same(k1, plain[s].Keys), $"keys of sequence {s} (block size {blockSize})");
                Assert.True(TensorAssert.Same(v1, plain[s].Values), $"values of sequence {s}");
                Assert.True(TensorAssert.Same(all.Keys[s].narrow(0, 0, len), plain[s].Keys[0]), $"padded keys of sequence {s}");
                Assert.True(TensorAssert.Same(all.Values[s].narrow(0, 0, len), plain[s].Values[0]), $"padded values of sequence {s}");
                Assert.Equal(0f, all.Keys[s].narrow(0, len, lmax - len).abs().sum().item<float>());
                Assert.Equal(0f, all.Values[s].narrow(0, len, lmax - len).abs().sum().item<float>());
                for (long j = 0; j < lmax; j++) Assert.Equal(j < len, all.KeyMask[s, 0, 0, j].item<bool>());
            }
        }
        finally { foreach (var c in plain) c.Dispose(); }
    }

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(3, 2, 2)]
    [InlineData(4, 3, 1)]
    [InlineData(5, 4, 4)]
    [InlineData(16, 3, 16)]
    public void PagedEqualsContiguousForRandomAppendSchedules(int blockSize, int sequences, int initialBlocks)
    {
        torch.manual_seed(41 + blockSize);
        var rng = new Random(blockSize * 7 + sequences);
        var schedule = Enumerable.Range(0, 20).Select(_ => (rng.Next(sequences), rng.Next(1, 8))).ToList();
        RunSchedule(blockSize, initialBlocks, schedule, sequences);
    }

    [Fact]
    public void LengthsThatAreMultiplesOfTheBlockSizeFillWholeBlocks()
    {
        torch.manual_seed(42);
        RunSchedule(4, 2, new[] { (0, 4), (1, 8), (0, 4), (2, 3), (2, 1), (1, 4) }, 3);
    }

    [Fact]
    public void BatchedDecodeOverTheGatherEqualsEachSequenceAlone()
    {
        torch.manual_seed(43);
        using var scope = NewDisposeScope();
        using var paged = new PagedKvCache(3, H, D, Dv, blockSize: 3);
        var lengths = new[] { 2, 7, 5 };
        var ks = lengths.Select(n => torch.randn(n, H, D)).ToArray(); var vs = lengths.Select(n => torch.randn(n, H, Dv)).ToArray();
        for (int s = 0; s < 3; s++) paged.Append(s, ks[s], vs[s]);
        var q = torch.randn(3, 1, H, D);
        using var all = paged.Gather();
        using var batched = ReferenceAttention.Softmax(q, all.Keys, all.Values, mask: all.KeyMask);
        for (int s = 0; s < 3; s++)
        {
            using var alone = ReferenceAttention.Softmax(q.narrow(0, s, 1), ks[s].unsqueeze(0), vs[s].unsqueeze(0));
            AssertClose.Tensors(batched.Output.narrow(0, s, 1), alone.Output, atol: 1e-6, rtol: 0, what: $"sequence {s}");
        }
    }

    [Fact]
    public void FreedBlocksAreReusedAndThePoolGrowsOnlyWhenFull()
    {
        torch.manual_seed(44);
        using var scope = NewDisposeScope();
        using var paged = new PagedKvCache(2, H, D, Dv, blockSize: 2, initialBlocks: 4);
        var k0 = torch.randn(8, H, D); var v0 = torch.randn(8, H, Dv);
        paged.Append(0, k0, v0);                                    // 4 blocks: the whole pool
        Assert.Equal(4, paged.UsedBlocks);
        paged.Append(1, torch.randn(1, H, D), torch.randn(1, H, Dv));
        Assert.Equal(8, paged.PoolBlocks);                          // doubled, contents kept
        Assert.True(TensorAssert.Same(paged.Gather(0).Keys, k0.unsqueeze(0)));
        var held = paged.BlockTable(0).ToArray();
        paged.Free(0);
        Assert.Equal(0, paged.Length(0));
        Assert.Equal(1, paged.UsedBlocks);
        var k1 = torch.randn(7, H, D); var v1 = torch.randn(7, H, Dv);
        paged.Append(1, k1, v1);                                    // 8 tokens → 4 blocks: 3 new ones come from the freed
        Assert.Equal(8, paged.PoolBlocks);
        Assert.Subset(held.ToHashSet(), paged.BlockTable(1).Skip(1).ToHashSet());
        Assert.True(TensorAssert.Same(paged.Gather(1).Values.narrow(1, 1, 7), v1.unsqueeze(0)));
    }

    [Fact]
    public void TheCacheOwnsItsTensors()
    {
        torch.manual_seed(45);
        void Use()
        {
            using var scope = NewDisposeScope();
            using var paged = new PagedKvCache(2, H, D, Dv, blockSize: 2, initialBlocks: 1);
            paged.Append(0, torch.randn(5, H, D), torch.randn(5, H, Dv));
            paged.Append(1, torch.randn(2, H, D), torch.randn(2, H, Dv));
            using var g = paged.Gather();
            paged.Gather(1);
        }
        LeakCheck.AssertNoLeak(Use, "paged KV cache");
    }

    [Fact]
    public void BadInputsNameTheArgument()
    {
        using var scope = NewDisposeScope();
        using var paged = new PagedKvCache(2, H, D, Dv, blockSize: 2);
        void Throws(string name, Action call) => Assert.Equal(name, Assert.ThrowsAny<ArgumentException>(call).ParamName);
        Throws("k", () => paged.Append(0, torch.randn(1, 1, H, D), torch.randn(1, H, Dv)));
        Throws("k", () => paged.Append(0, torch.randn(1, H + 1, D), torch.randn(1, H + 1, Dv)));
        Throws("v", () => paged.Append(0, torch.randn(2, H, D), torch.randn(1, H, Dv)));
        Throws("v", () => paged.Append(0, torch.randn(1, H, D), torch.randn(1, H, Dv + 1)));
        Throws("k", () => paged.Append(0, torch.randn(1, H, D, dtype: float64), torch.randn(1, H, Dv, dtype: float64)));
        Throws("sequence", () => paged.Append(2, torch.randn(1, H, D), torch.randn(1, H, Dv)));
        Throws("blockSize", () => new PagedKvCache(1, H, D, Dv, blockSize: 0));
        Assert.Equal(0, paged.Length(0));                         // nothing was appended by the failed calls
    }
}
