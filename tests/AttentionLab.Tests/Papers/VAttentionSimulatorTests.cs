using AttentionLab.Papers.VAttention;

namespace AttentionLab.Tests.Papers;

/// <summary>The page arithmetic (the spec's worked numbers) and the simulator's invariants.</summary>
public class VAttentionSimulatorTests
{
    static readonly KvGeometry Llama = KvGeometry.Llama3_8B;

    [Fact]
    public void WorkedNumbersOfTheSpec()
    {
        Assert.Equal(2048, Llama.BytesPerTokenPerTensor);                                  // 8 · 128 · 2 B
        Assert.Equal(128 * 1024, Llama.BytesPerToken);                                     // 32 layers · {K, V}: 128 KB per token
        Assert.Equal(1024, PageMath.PageTokens(Llama, 2L << 20));                           // 2 MB / (8·128·2 B) = 1024 tokens
        Assert.Equal(32, PageMath.PageTokens(Llama, 64L << 10));
        Assert.Equal(64, PageMath.PageTokens(Llama, 128L << 10));
        Assert.Equal(128, PageMath.PageTokens(Llama, 256L << 10));
        Assert.Equal(64L * 1023 * 2048, PageMath.FragmentationBoundBytes(Llama, 2L << 20)); // 2L · (page_tokens − 1) rows
        Assert.Equal(64_000_000_000, GpuBudget.A100_80GB_8B.KvBytes);
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(1, 1)]
    [InlineData(1024, 1)]
    [InlineData(1025, 2)]
    [InlineData(4097, 5)]
    public void PageCountsFollowTheCeilingFormula(long tokens, long pages)
    {
        Assert.Equal(pages, PageMath.PagesPerTensor(Llama, PageMath.Page2MiB, tokens));
        Assert.Equal(Llama.Tensors * pages * PageMath.Page2MiB, PageMath.RequestBytes(Llama, PageMath.Page2MiB, tokens));
    }

    static RequestTrace SmallTrace(int seed = 3) => RequestTrace.Synthetic(150, LengthDist.LogNormal(900, 0.9, 8, 3000),
        LengthDist.LogNormal(120, 1.0, 1, 1000), 2.0, seed);

    static KvMemorySimulator SmallSimulator() => new(new GpuBudget(24_000_000_000, 16_000_000_000), Llama, maxBatch: 64, maxContext: 4096);

    [Fact]
    public void UsedNeverExceedsReservedNorReservedTheBudgetAndEveryRequestFinishes()
    {
        var sim = SmallSimulator();
        var trace = SmallTrace();
        foreach (var run in sim.Run(trace, VAttentionExperiment.Config.SpecPolicies(4096)))
        {
            Assert.Equal(trace.Requests.Count, run.Completed);
            foreach (var s in run.Steps)
            {
                Assert.True(s.UsedBytes <= s.ReservedBytes, $"{run.Name} step {s.Step}: used {s.UsedBytes} > reserved {s.ReservedBytes}");
                Assert.True(s.ReservedBytes <= sim.Budget.KvBytes, $"{run.Name} step {s.Step}: reserved {s.ReservedBytes} > budget");
                Assert.True(s.Running <= sim.MaxBatch);
            }
            Assert.Equal(0, run.Steps[^1].UsedBytes);
        }
    }

    [Fact]
    public void VirtualFragmentationStaysUnderTheBoundPerActiveRequest()
    {
        var sim = SmallSimulator();
        foreach (long page in new[] { PageMath.Page64KiB, PageMath.Page2MiB })
        foreach (bool deferred in new[] { false, true })
        {
            var run = sim.Run(SmallTrace(), MemoryPolicy.Virtual(page, deferred));
            long bound = PageMath.FragmentationBoundBytes(Llama, page);
            foreach (var s in run.Steps)
                Assert.True(s.WastedBytes <= s.Running * bound, $"{page} B pages, step {s.Step}: waste {s.WastedBytes} > {s.Running} × {bound}");
            Assert.Contains(run.Steps, s => s.WastedBytes > 0);                         // the bound is not vacuous
        }
    }

    [Fact]
    public void StaticWasteIsMaxContextMinusLengthSummedOverRequests()
    {
        var alloc = MemoryPolicy.Static(4096).Create(GpuBudget.A100_80GB_8B, Llama, 64, 4096);
        var lens = new long[] { 5, 4096, 1000 };
        for (int i = 0; i < lens.Length; i++) Assert.True(alloc.TryAdmit(i, lens[i]));
        Assert.True(alloc.TryGrow(0, 6));
        lens[0] = 6;
        Assert.Equal(lens.Sum(l => 4096 - l) * Llama.BytesPerToken, alloc.ReservedBytes - alloc.UsedBytes);   // Σ (max_ctx − len)
        Assert.False(alloc.TryGrow(1, 4097));                                            // cannot outgrow its reservation

        var run = SmallSimulator().Run(SmallTrace(), MemoryPolicy.Static(4096));
        Assert.All(run.Steps, s => Assert.Equal(s.Running * 4096L * Llama.BytesPerToken, s.ReservedBytes));
    }

    [Fact]
    public void PagedHoldsCeilingBlocksAndVirtualMapsCeilingPagesPerTensor()
    {
        var paged = new PagedAllocator("p", GpuBudget.A100_80GB_8B, Llama, blockTokens: 16);
        Assert.True(paged.TryAdmit(0, 17));
        Assert.Equal(2 * 16 * Llama.BytesPerToken, paged.ReservedBytes);                // ⌈17/16⌉ = 2 blocks
        Assert.True(paged.TryGrow(0, 32));
        Assert.Equal(2, paged.AllocationCalls);
        Assert.True(paged.TryGrow(0, 33));
        Assert.Equal(3, paged.AllocationCalls);

        var v = new VirtualAllocator("v", GpuBudget.A100_80GB_8B, Llama, PageMath.Page64KiB, maxBatch: 4, maxContext: 8192, deferredReclaim: true);
        Assert.True(v.TryAdmit(7, 33));                                                   // ⌈33/32⌉ = 2 pages in each of 64 tensors
        Assert.Equal(2, v.Snapshot().MappedPages.Max());
        Assert.Equal(64 * 2, v.AllocationCalls);
        Assert.Equal(64 * 2 * PageMath.Page64KiB, v.ReservedBytes);
        Assert.Equal(4L * 8192 * Llama.BytesPerToken, v.VirtualBytes);
    }

    [Fact]
    public void DeferredReclamationReusesAFinishedSlotsPagesAndClearsItsLength()
    {
        var v = new VirtualAllocator("v", GpuBudget.A100_80GB_8B, Llama, PageMath.Page64KiB, maxBatch: 2, maxContext: 8192, deferredReclaim: true);
        Assert.True(v.TryAdmit(1, 100));
        long calls = v.AllocationCalls, reserved = v.ReservedBytes;
        v.Release(1);
        Assert.Equal(reserved, v.ReservedBytes);                                          // pages kept
        Assert.Equal(reserved, v.ReclaimableBytes);
        Assert.Equal(0, v.UsedBytes);                                                     // the slot's length is cleared
        Assert.True(v.TryAdmit(2, 90));
        Assert.Equal(calls, v.AllocationCalls);                                           // no new map calls
        Assert.Equal(90 * Llama.BytesPerToken, v.UsedBytes);

        var eager = new VirtualAllocator("e", GpuBudget.A100_80GB_8B, Llama, PageMath.Page64KiB, maxBatch: 2, maxContext: 8192, deferredReclaim: false);
        Assert.True(eager.TryAdmit(1, 100));
        eager.Release(1);
        Assert.Equal(0, eager.ReservedBytes);
        Assert.True(eager.TryAdmit(2, 90));
        Assert.Equal(calls + 64 * 3, eager.AllocationCalls);                              // ⌈100/32⌉ = 4 pages, then ⌈90/32⌉ = 3 mapped anew
    }

    [Fact]
    public void DeferredPagesAreReclaimedWhenAnotherRequestNeedsTheMemory()
    {
        var budget = new GpuBudget(64L * 4 * PageMath.Page64KiB, 0);                       // 4 pages in each of the 64 tensors
        var v = new VirtualAllocator("v", budget, Llama, PageMath.Page64KiB, maxBatch: 2, maxContext: 8192, deferredReclaim: true);
        Assert.True(v.TryAdmit(1, 96));                                                   // slot 0: 3 pages per tensor
        Assert.True(v.TryAdmit(2, 32));                                                   // slot 1: 1 page → the pool is full
        Assert.False(v.TryAdmit(3, 1));                                                   // no free slot
        v.Release(1);                                                                     // slot 0 keeps its 3 pages (deferred)
        Assert.Equal(3 * 64 * PageMath.Page64KiB, v.ReclaimableBytes);
        Assert.True(v.TryGrow(2, 33));                                                    // needs a second page: slot 0's are reclaimed
        Assert.Equal(0, v.ReclaimableBytes);
        Assert.Equal(3 * 64, v.FreeCalls);
        Assert.Equal(2 * 64 * PageMath.Page64KiB, v.ReservedBytes);
        Assert.False(v.TryGrow(2, 4 * 32 + 1));                                           // a fifth page per tensor does not exist
        Assert.True(v.ReservedBytes <= budget.KvBytes);
    }

    [Fact]
    public void SameSeedSameTraceAndArrivalsAreOrdered()
    {
        var a = SmallTrace(5);
        var b = SmallTrace(5);
        Assert.Equal(a.Requests, b.Requests);
        Assert.NotEqual(a.Requests, SmallTrace(6).Requests);
        Assert.True(a.Requests.Zip(a.Requests.Skip(1)).All(p => p.First.Arrival <= p.Second.Arrival));
        Assert.All(a.Requests, r => Assert.InRange(r.PromptLen, 8, 3000));
    }

    [Fact]
    public void BadInputIsRejectedNamingTheArgument()
    {
        Assert.Equal("pageBytes", Assert.Throws<ArgumentException>(() => PageMath.PageTokens(Llama, 1000)).ParamName);
        Assert.Equal("pageBytes", Assert.Throws<ArgumentException>(() => PageMath.PageTokens(Llama, 0)).ParamName);
        Assert.Equal("tokens", Assert.Throws<ArgumentException>(() => PageMath.PagesPerTensor(Llama, PageMath.Page2MiB, -1)).ParamName);
        Assert.Equal("HeadDim", Assert.Throws<ArgumentException>(() => new KvGeometry(1, 1, 0, 2).Validate()).ParamName);
        Assert.Equal("DeviceBytes", Assert.Throws<ArgumentException>(() => new GpuBudget(10, 20).Validate()).ParamName);
        Assert.Equal("n", Assert.Throws<ArgumentException>(() => RequestTrace.Synthetic(0, LengthDist.Constant(4), LengthDist.Constant(4), 1, 0)).ParamName);
        Assert.Equal("ratePerStep", Assert.Throws<ArgumentException>(
            () => RequestTrace.Synthetic(3, LengthDist.Constant(4), LengthDist.Constant(4), 0, 0)).ParamName);
        Assert.Equal("promptLen", Assert.Throws<ArgumentException>(
            () => RequestTrace.Synthetic(3, LengthDist.Uniform(5, 2), LengthDist.Constant(4), 1, 0)).ParamName);
        Assert.Equal("maxBatch", Assert.Throws<ArgumentException>(() => new KvMemorySimulator(GpuBudget.A100_80GB_8B, Llama, maxBatch: 0)).ParamName);
        var tooLong = RequestTrace.Synthetic(2, LengthDist.Constant(5000), LengthDist.Constant(10), 1, 0);
        Assert.Equal("trace", Assert.Throws<ArgumentException>(() => SmallSimulator().Run(tooLong, MemoryPolicy.Paged(16))).ParamName);
        Assert.Equal("policies", Assert.Throws<ArgumentException>(() => SmallSimulator().Run(SmallTrace(), Array.Empty<MemoryPolicy>())).ParamName);
        var alloc = MemoryPolicy.Paged(16).Create(GpuBudget.A100_80GB_8B, Llama, 4, 4096);
        Assert.Equal("tokens", Assert.Throws<ArgumentException>(() => alloc.TryAdmit(0, 0)).ParamName);
        Assert.Equal("id", Assert.Throws<ArgumentException>(() => alloc.TryGrow(9, 3)).ParamName);
        Assert.Equal("blockTokens", Assert.Throws<ArgumentException>(() => MemoryPolicy.Paged(0).Create(GpuBudget.A100_80GB_8B, Llama, 4, 4096)).ParamName);
    }
}
