using System.Diagnostics;
using System.Globalization;
using AttentionLab.Bench;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.GpuCheck;

/// <summary>One memory probe: MiB (null when not measured), how it was measured, and "ok" or why not.</summary>
public sealed record MemoryResult(double? MiB, string How, string Status);

/// <summary>One benchmark case's result. Peak memory comes later, from a memory probe (null until then or when unavailable).</summary>
public sealed record BenchRow(BenchMethod Method, string Device, BenchShape Shape, TimingStats? Time, string Status, string Note)
{
    public double? PeakMemMiB { get; set; }
    public string MemMethod { get; set; } = "";
    public double TokensPerSecond => Time is { MedianMs: > 0 } t ? Shape.Tokens / (t.MedianMs / 1000) : double.NaN;
}

/// <summary>
/// Runs <see cref="BenchSuite"/>: every method at every length (shortest first), timed with the library's
/// <see cref="Benchmark.Time"/> (which synchronises CUDA around each call). The first call of a case is the warm-up
/// and decides the repeats; sizes that cannot fit or that would overrun the time budget are skipped with a note.
/// </summary>
public sealed class BenchRunner
{
    readonly Options options;
    readonly Device device;
    readonly Nvml? nvml;
    readonly Stopwatch clock;
    readonly bool cuda;

    public BenchRunner(Options options, Device device, Nvml? nvml, Stopwatch clock)
    {
        (this.options, this.device, this.nvml, this.clock) = (options, device, nvml, clock);
        cuda = device.type == DeviceType.CUDA;
    }

    public static readonly string[] Header =
    {
        "method", "key", "family", "device", "dtype", "batch", "seq_len", "heads", "head_dim", "tokens", "median_ms", "min_ms",
        "max_ms", "repeats", "tokens_per_s", "peak_mem_mib", "mem_method", "status", "note",
    };

    /// <summary>
    /// Memory probes run first (the parent then holds almost no GPU memory: torch's caching allocator never gives back
    /// what a benchmark reserved, so probing after the benchmarks would starve the probes) and stop at 40% of the
    /// budget; the benchmarks stop at 95%.
    /// </summary>
    double MemoryDeadline => 0.40 * options.Budget;
    double BenchDeadline => 0.95 * options.Budget;
    /// <summary>A probe (process start included) longer than this ends that method's probes at longer T.</summary>
    double MaxProbeSeconds => options.Quick ? 30 : 25;
    /// <summary>A single call longer than this ends that method's sweep (longer T would take longer still).</summary>
    double MaxCallSeconds => options.Quick ? 5 : 8;
    /// <summary>Timed calls of one case stay within this many seconds.</summary>
    double CaseSeconds => options.Quick ? 3 : 15;

    IReadOnlyList<BenchMethod> Methods() => BenchSuite.Methods().Where(m => cuda || !m.CudaOnly).ToList();

    public List<BenchRow> Run(string csvPath, IReadOnlyDictionary<(string Key, long SeqLen), MemoryResult> memory)
    {
        var methods = Methods();
        double available = AvailableBytes(out string availableFrom);
        Console.WriteLine($"benchmarks on {device}: {methods.Count} methods × T = {string.Join(", ", BenchSuite.SeqLens(options.Quick))}; " +
                          $"memory for workspaces {available / 1073741824.0:F1} GiB ({availableFrom})");
        var rows = new List<BenchRow>();
        var tooSlow = new Dictionary<string, string>();
        using var csv = new CsvFile(csvPath, Header);
        using var noGrad = torch.no_grad();
        foreach (long seqLen in BenchSuite.SeqLens(options.Quick))
        {
            var shape = BenchSuite.Shape(options.Quick, seqLen);
            foreach (var group in methods.GroupBy(m => m.Dtype))
            {
                BenchInputs? inputs = null;
                try
                {
                    foreach (var method in group)
                    {
                        var row = Case(method, shape, available, tooSlow, ref inputs);
                        if (memory.TryGetValue((method.Key, seqLen), out var m) && m.MiB is { } mib) { row.PeakMemMiB = mib; row.MemMethod = m.How; }
                        rows.Add(row);
                        Write(csv, row);
                        Console.WriteLine($"  {method.Key,-24} T={seqLen,-6} B={shape.Batch,-4} {row.Status,-8} " +
                                          (row.Time is { } t ? $"{t.MedianMs,10:F3} ms  {row.TokensPerSecond,12:N0} tok/s  n={t.Repeats}" : "") +
                                          (row.Note.Length > 0 ? $"  ({row.Note})" : ""));
                    }
                }
                finally { inputs?.Dispose(); }
            }
        }
        return rows;
    }

    BenchRow Case(BenchMethod method, BenchShape shape, double available, Dictionary<string, string> tooSlow, ref BenchInputs? inputs)
    {
        string dev = device.ToString();
        if (tooSlow.TryGetValue(method.Key, out string? why)) return new BenchRow(method, dev, shape, null, "skipped", why);
        double need = method.WorkspaceBytes(shape, BenchSuite.ElementSize(method.Dtype));
        if (need > available)
            return new BenchRow(method, dev, shape, null, "skipped", $"needs ~{need / 1073741824.0:F1} GiB, {available / 1073741824.0:F1} GiB available");
        if (clock.Elapsed.TotalSeconds > BenchDeadline)
            return new BenchRow(method, dev, shape, null, "skipped", $"time budget: benchmarks stop at {BenchDeadline:F0} s of {options.Budget:F0} s");
        try
        {
            inputs ??= new BenchInputs(shape, method.Dtype, device);
            var x = inputs;
            void Call() => method.Run(x);
            double probe = Probe(Call);                                   // warm-up call, timed, decides the repeats
            if (probe < 1) probe = Math.Min(probe, Probe(Call));          // a first call may pay for lazy kernel loading
            if (probe > MaxCallSeconds)
            {
                tooSlow[method.Key] = $"T={shape.SeqLen} took {probe:F1} s per call";
                return new BenchRow(method, dev, shape, new TimingStats(probe * 1000, probe * 1000, probe * 1000, 1), "ok",
                    $"one call only (the warm-up call): longer than {MaxCallSeconds:F0} s; longer T skipped");
            }
            int repeats = probe < 0.05 ? 10 : probe < 0.5 ? 5 : 3;
            double left = BenchDeadline - clock.Elapsed.TotalSeconds;
            repeats = (int)Math.Max(1, Math.Min(repeats, Math.Floor(Math.Min(CaseSeconds, left) / Math.Max(probe, 1e-6))));
            var time = Benchmark.Time(Call, warmup: 0, repeats: repeats, device: device);
            return new BenchRow(method, dev, shape, time, "ok", "");
        }
        catch (Exception e)
        {
            inputs?.Dispose();
            inputs = null;
            string message = FirstLine(e);
            bool oom = message.Contains("out of memory", StringComparison.OrdinalIgnoreCase);
            if (oom) tooSlow[method.Key] = $"out of memory at T={shape.SeqLen}";
            return new BenchRow(method, dev, shape, null, oom ? "oom" : "error", message);
        }
    }

    double Probe(Action call)
    {
        if (cuda) torch.cuda.synchronize();
        var watch = Stopwatch.StartNew();
        using (var scope = NewDisposeScope()) call();
        if (cuda) torch.cuda.synchronize();
        return watch.Elapsed.TotalSeconds;
    }

    /// <summary>Bytes a case may use beyond what is allocated now: 85% of the GPU's free memory (NVML), or of MemAvailable on the CPU.</summary>
    double AvailableBytes(out string from)
    {
        if (cuda)
        {
            if (nvml?.Memory(device.index < 0 ? 0 : device.index) is { } m)
            {
                from = "85% of the GPU's free memory, NVML";
                return 0.85 * (m.Total - m.Used);
            }
            from = "assumed 60 GiB: NVML not available";
            return 60.0 * 1073741824;
        }
        foreach (var line in File.Exists("/proc/meminfo") ? File.ReadLines("/proc/meminfo") : Enumerable.Empty<string>())
            if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
            {
                from = "70% of MemAvailable";
                return 0.70 * long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
            }
        from = "assumed 4 GiB";
        return 4.0 * 1073741824;
    }

    /// <summary>
    /// Peak memory of one call per (method, T in <see cref="BenchSuite.MemorySeqLens"/>), each in a fresh process of this
    /// program (<see cref="MemoryProbe"/>): on CUDA torch's caching allocator keeps what it reserved, so only a fresh
    /// process shows one call's growth. Sizes that cannot fit are skipped; probes stop at the memory deadline.
    /// </summary>
    public Dictionary<(string Key, long SeqLen), MemoryResult> ProbeMemory(string csvPath)
    {
        var results = new Dictionary<(string, long), MemoryResult>();
        using var csv = new CsvFile(csvPath, "key", "dtype", "seq_len", "batch", "peak_mem_mib", "mem_method", "status", "seconds");
        var lengths = BenchSuite.MemorySeqLens(options.Quick);
        double available = AvailableBytes(out _);
        var tooSlow = new Dictionary<string, string>();
        Console.WriteLine($"memory probes (one fresh process per case) at T = {string.Join(", ", lengths)}");
        foreach (long seqLen in lengths)
            foreach (var method in Methods())
            {
                var shape = BenchSuite.Shape(options.Quick, seqLen);
                var watch = Stopwatch.StartNew();
                double need = method.WorkspaceBytes(shape, BenchSuite.ElementSize(method.Dtype));
                MemoryResult result;
                if (tooSlow.TryGetValue(method.Key, out string? why)) result = new(null, "", $"skipped: {why}");
                else if (need > available) result = new(null, "", $"skipped: needs ~{need / 1073741824.0:F1} GiB");
                else if (clock.Elapsed.TotalSeconds > MemoryDeadline) result = new(null, "", $"skipped: time budget (probes stop at {MemoryDeadline:F0} s)");
                else
                {
                    var timeout = TimeSpan.FromSeconds(3 * MaxProbeSeconds);
                    try
                    {
                        var (bytes, how, error) = MemoryProbe.Spawn(options, method.Key, seqLen, timeout);
                        result = bytes is { } b ? new(b / 1048576.0, how, "ok") : new(null, "", error);
                    }
                    catch (Exception e) { result = new(null, "", $"probe failed: {FirstLine(e)}"); }
                    if (watch.Elapsed.TotalSeconds > MaxProbeSeconds) tooSlow[method.Key] = $"the probe at T={seqLen} took {watch.Elapsed.TotalSeconds:F0} s";
                }
                results[(method.Key, seqLen)] = result;
                csv.Row(method.Key, method.Dtype.ToString(), seqLen, shape.Batch, result.MiB, result.How, result.Status, watch.Elapsed.TotalSeconds);
                Console.WriteLine($"  {method.Key,-24} T={seqLen,-6} " + (result.MiB is { } mib ? $"{mib,10:F1} MiB" : result.Status)
                    + $"  ({watch.Elapsed.TotalSeconds:F1} s)");
            }
        return results;
    }

    static void Write(CsvFile csv, BenchRow r) => csv.Row(r.Method.Name, r.Method.Key, r.Method.Family, r.Device, r.Method.Dtype.ToString(),
        r.Shape.Batch, r.Shape.SeqLen, r.Shape.Heads, r.Shape.HeadDim, r.Shape.Tokens, r.Time?.MedianMs, r.Time?.MinMs, r.Time?.MaxMs,
        r.Time?.Repeats, double.IsNaN(r.TokensPerSecond) ? null : (object)(long)Math.Round(r.TokensPerSecond), r.PeakMemMiB, r.MemMethod, r.Status, r.Note);

    /// <summary>A plain-text table: median ms per method (rows) and T (columns), then peak MiB where probed.</summary>
    public static IEnumerable<string> Table(IReadOnlyList<BenchRow> rows)
    {
        var lengths = rows.Select(r => r.Shape.SeqLen).Distinct().OrderBy(t => t).ToList();
        yield return "benchmark (median ms per call; '-' skipped; tokens per call = batch × T):";
        yield return $"  {"method",-26}" + string.Concat(lengths.Select(t => $"{"T=" + t,11}"));
        foreach (var group in rows.GroupBy(r => r.Method.Key))
            yield return $"  {group.Key,-26}" + string.Concat(lengths.Select(t =>
                group.FirstOrDefault(r => r.Shape.SeqLen == t) is { Time: { } time } ? $"{time.MedianMs,11:F3}" : $"{"-",11}"));
        if (rows.Any(r => r.PeakMemMiB is not null))
        {
            yield return "peak memory (MiB per call, memory probes):";
            foreach (var group in rows.Where(r => r.PeakMemMiB is not null).GroupBy(r => r.Method.Key))
                yield return $"  {group.Key,-26}" + string.Join("  ", group.Select(r => $"T={r.Shape.SeqLen}: {r.PeakMemMiB:F1}"));
        }
    }

    static string FirstLine(Exception e)
    {
        string text = e.Message;
        int cut = text.IndexOfAny(new[] { '\n', '\r' });
        return (cut > 0 ? text[..cut] : text).Trim();
    }
}
