using AttentionLab.Bench;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests;

/// <summary>Tests that read process-wide state (peak RSS): they run after the parallel tests, one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessWideCollection
{
    public const string Name = "process-wide measurements";
}

/// <summary>The benchmark harness: ordered timings, and a peak-memory probe that sees a 16 MB tensor.</summary>
[Collection(ProcessWideCollection.Name)]
public class BenchmarkProbeTests
{
    [Fact]
    public void BenchmarkReportsOrderedTimesAndSaysWhatMemoryItMeasured()
    {
        var t = Benchmark.Time(() => torch.randn(64, 64).matmul(torch.randn(64, 64)), warmup: 1, repeats: 5);
        Assert.True(t.MinMs <= t.MedianMs && t.MedianMs <= t.MaxMs);
        // Allocate and free 16 MB twice first: without a fixed malloc threshold glibc would now serve such a
        // tensor from reused heap pages and the peak would not see it (this failed in CI before the fix).
        for (int i = 0; i < 2; i++) torch.zeros(4_000_000).add_(1).Dispose();
        // The probe is process-wide (VmHWM): memory freed by tests on other threads can hide the growth (seen twice in
        // full runs: peak = baseline at 857 and 959 MB RSS), so this class runs alone (its collection is not parallel)
        // and a miss is still retried twice; a broken probe misses all three times.
        // A full run (1,700 tests) also left the GC releasing memory during the call (peak = baseline at 325 MB, three
        // times): settle the managed heap first.
        var misses = new List<string>();
        for (int attempt = 0; attempt < 3; attempt++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            var m = Benchmark.PeakMemory(() => torch.zeros(4_000_000).add_(1));
            Assert.False(string.IsNullOrEmpty(m.Method));
            if (!OperatingSystem.IsLinux() || m.DeltaBytes is not { } d) return;
            Assert.True(Benchmark.MallocThresholdFixed, "glibc did not accept the fixed mmap threshold");
            if (d >= 8_000_000) return;
            misses.Add($"{d} B (peak {m.PeakBytes}, baseline {m.BaselineBytes})");
        }
        Assert.Fail($"a 16 MB tensor raised the peak by too little three times: {string.Join("; ", misses)}");
    }
}
