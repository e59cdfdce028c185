using System.Diagnostics;
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
    const long SixteenMb = 4_000_000 * sizeof(float);

    [Fact]
    public void BenchmarkReportsOrderedTimes()
    {
        var t = Benchmark.Time(() => torch.randn(64, 64).matmul(torch.randn(64, 64)), warmup: 1, repeats: 5);
        Assert.True(t.MinMs <= t.MedianMs && t.MedianMs <= t.MaxMs);
        Assert.Equal(5, t.Repeats);
    }

    /// <summary>
    /// The probe itself (<see cref="Benchmark.PeakMemory"/>) runs in a fresh child process (this test assembly's own entry point,
    /// <see cref="ProbeChild"/>): in this process other tests, the GC and finalizers free memory while the call runs and the
    /// process-wide high-water mark missed the tensor (0 B, three times, on a busy machine). The child does nothing else, so its
    /// answer depends only on the call. A probe that reports 0 (or too little) for a real 16 MB tensor fails; one that reports
    /// 16 MB for a call that allocates nothing fails the control.
    /// </summary>
    [Fact]
    public void PeakMemorySeesA16MbTensorAndNotAnEmptyCall()
    {
        var tensor = RunChild(4_000_000);
        Assert.False(string.IsNullOrEmpty(tensor.Method));
        if (!OperatingSystem.IsLinux())
        {
            Assert.Null(tensor.DeltaBytes); // elsewhere the probe says "not available" rather than guessing
            return;
        }
        Assert.True(tensor.DeltaBytes is { } d && d >= SixteenMb * 9 / 10,
            $"a 16 MB tensor raised the child's peak by {tensor.DeltaBytes} B (peak {tensor.PeakBytes}, baseline {tensor.BaselineBytes}; {tensor.Method})");
        Assert.True(tensor.DeltaBytes < 4 * SixteenMb, $"a 16 MB tensor raised the child's peak by {tensor.DeltaBytes} B: more than 4× its size");
        var empty = RunChild(0);
        Assert.True(empty.DeltaBytes is { } e && e < SixteenMb / 2,
            $"an empty call raised the child's peak by {empty.DeltaBytes} B (peak {empty.PeakBytes}, baseline {empty.BaselineBytes})");
    }

    [Fact]
    public void ChildReportRoundTripsAndRejectsOtherLines()
    {
        var writer = new StringWriter();
        Benchmark.ReportToParent(new MemoryStats(2048, 1024, "test method"), writer);
        var back = Benchmark.ParseChildReport(writer.ToString().Trim());
        Assert.Equal(1024, back.DeltaBytes);
        Assert.StartsWith("test method", back.Method);
        writer = new StringWriter();
        Benchmark.ReportToParent(new MemoryStats(null, null, "not available"), writer);
        Assert.Null(Benchmark.ParseChildReport(writer.ToString().Trim()).DeltaBytes);
        Assert.Throws<ArgumentException>(() => Benchmark.ParseChildReport("ATTNLAB_PEAK peak=x baseline=1 method=m"));
    }

    static MemoryStats RunChild(long elements)
    {
        string dll = typeof(BenchmarkProbeTests).Assembly.Location;
        var start = new ProcessStartInfo("dotnet") { ArgumentList = { "exec", dll, ProbeChild.Command,
            elements.ToString(System.Globalization.CultureInfo.InvariantCulture) } };
        start.Environment["ATTNLAB_THREADS"] = "1";
        return Benchmark.PeakMemoryInChildProcess(start, TimeSpan.FromSeconds(120));
    }
}

/// <summary>
/// This test assembly's entry point (the project sets GenerateProgramFile=false; the test host never calls it).
/// <c>dotnet exec AttentionLab.Tests.dll peak-memory-child N</c> measures one call that makes an N-element float tensor
/// with <see cref="Benchmark.PeakMemory"/> and prints the report line.
/// </summary>
public static class ProbeChild
{
    public const string Command = "peak-memory-child";

    public static int Main(string[] args)
    {
        if (args.Length != 2 || args[0] != Command || !long.TryParse(args[1], out long elements) || elements < 0)
        {
            Console.Error.WriteLine($"usage: AttentionLab.Tests.dll {Command} ELEMENTS");
            return 2;
        }
        torch.set_num_threads(1);
        // Load torch and its kernels first, so the measured call sees only its own tensor.
        for (int i = 0; i < 2; i++) torch.zeros(elements).add_(1).Dispose();
        var m = Benchmark.PeakMemory(() => { if (elements > 0) torch.zeros(elements).add_(1); });
        Benchmark.ReportToParent(m);
        return 0;
    }
}
