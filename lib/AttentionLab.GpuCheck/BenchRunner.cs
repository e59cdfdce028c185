using System.Diagnostics;
using System.Globalization;
using AttentionLab.Bench;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.GpuCheck;

/// <summary>One benchmark case's result. Peak memory comes later, from a memory probe (null until then or when unavailable).</summary>
public sealed record BenchRow(BenchMethod Method, string Device, BenchShape Shape, TimingStats? Time, string Status, string Note)
{
    public double? PeakMemMiB { get; set; }
    public string MemMethod { get; set; } = "";
    public double? ProbeSeconds { get; init; }
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

    /// <summary>Benchmarks stop at 70% of the budget; memory probes use the rest (up to 95%).</summary>
    double BenchDeadline => 0.70 * options.Budget;
    double MemoryDeadline => 0.95 * options.Budget;
    /// <summary>A single call longer than this ends that method's sweep (longer T would take longer still).</summary>
    double MaxCallSeconds => options.Quick ? 5 : 8;
    /// <summary>Timed calls of one case stay within this many seconds.</summary>
    double CaseSeconds => options.Quick ? 3 : 15;

    public List<BenchRow> Run(string csvPath)
    {
        var methods = BenchSuite.Methods().Where(m => cuda || !m.CudaOnly).ToList();
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
            if (probe > MaxCallSeconds)
            {
                tooSlow[method.Key] = $"T={shape.SeqLen} took {probe:F1} s per call";
                return new BenchRow(method, dev, shape, new TimingStats(probe * 1000, probe * 1000, probe * 1000, 1), "ok",
                    $"one call only (the warm-up call): longer than {MaxCallSeconds:F0} s; longer T skipped") { ProbeSeconds = probe };
            }
            int repeats = probe < 0.05 ? 10 : probe < 0.5 ? 5 : 3;
            double left = BenchDeadline - clock.Elapsed.TotalSeconds;
            repeats = (int)Math.Max(1, Math.Min(repeats, Math.Floor(Math.Min(CaseSeconds, left) / Math.Max(probe, 1e-6))));
            var time = Benchmark.Time(Call, warmup: 0, repeats: repeats, device: device);
            return new BenchRow(method, dev, shape, time, "ok", "") { ProbeSeconds = probe };
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
    /// program (<see cref="MemoryProbe"/>): on CUDA torch's caching allocator never returns memory, so only a fresh
    /// process shows one call's growth. Probes run until the memory deadline; the rest say so.
    /// </summary>
    public void ProbeMemory(List<BenchRow> rows, string csvPath)
    {
        using var csv = new CsvFile(csvPath, "key", "dtype", "seq_len", "batch", "peak_mem_mib", "mem_method", "status", "seconds");
        var wanted = BenchSuite.MemorySeqLens(options.Quick);
        Console.WriteLine($"memory probes (one fresh process per case) at T = {string.Join(", ", wanted)}");
        foreach (long seqLen in wanted)
            foreach (var row in rows.Where(r => r.Shape.SeqLen == seqLen && r.Status == "ok"))
            {
                var watch = Stopwatch.StartNew();
                string status;
                if (row.ProbeSeconds > MaxCallSeconds / 2) status = "skipped: one call is too slow for a probe";
                else if (clock.Elapsed.TotalSeconds > MemoryDeadline) status = $"skipped: time budget ({MemoryDeadline:F0} s)";
                else
                {
                    var (bytes, how, error) = MemoryProbe.Spawn(options, row.Method.Key, seqLen, TimeSpan.FromSeconds(Math.Min(120, MemoryDeadline - clock.Elapsed.TotalSeconds + 30)));
                    row.MemMethod = how;
                    if (bytes is { } b) { row.PeakMemMiB = b / 1048576.0; status = "ok"; }
                    else status = error;
                }
                csv.Row(row.Method.Key, row.Method.Dtype.ToString(), seqLen, row.Shape.Batch, row.PeakMemMiB, row.MemMethod, status, watch.Elapsed.TotalSeconds);
                Console.WriteLine($"  {row.Method.Key,-24} T={seqLen,-6} " + (row.PeakMemMiB is { } mib ? $"{mib,10:F1} MiB" : status) + $"  ({watch.Elapsed.TotalSeconds:F1} s)");
            }
    }

    public void WriteMerged(List<BenchRow> rows, string csvPath)
    {
        using var csv = new CsvFile(csvPath, Header);
        foreach (var row in rows) Write(csv, row);
    }

    static void Write(CsvFile csv, BenchRow r) => csv.Row(r.Method.Name, r.Method.Key, r.Method.Family, r.Device, r.Method.Dtype.ToString(),
        r.Shape.Batch, r.Shape.SeqLen, r.Shape.Heads, r.Shape.HeadDim, r.Shape.Tokens, r.Time?.MedianMs, r.Time?.MinMs, r.Time?.MaxMs,
        r.Time?.Repeats, r.TokensPerSecond, r.PeakMemMiB, r.MemMethod, r.Status, r.Note);

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
