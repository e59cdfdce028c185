using System.Globalization;

namespace GpuCheck.Tests;

/// <summary>
/// The GPU check bundle on this CPU-only machine: the same trimmed, self-contained bundle the GPU machine gets, loading
/// the CPU libtorch from the NuGet cache through ATTNLAB_TORCH_LIB_DIR (TorchBackend=external), driven by the same
/// run-on-gpu.sh. CUDA comparisons are skipped here; CPU-vs-CPU repeats must agree to the bit.
/// </summary>
[Collection(BundleCollection.Name)]
public sealed class BundleTests(BundleFixture fx, ITestOutputHelper output)
{
    static readonly string[] CorrectnessHeader = { "check", "case", "value", "compare", "max_abs_diff", "rms_rel", "allowed", "tolerance", "status" };
    static readonly string[] BenchHeader =
    {
        "method", "key", "family", "device", "dtype", "batch", "seq_len", "heads", "head_dim", "tokens", "median_ms", "min_ms",
        "max_ms", "repeats", "tokens_per_s", "peak_mem_mib", "mem_method", "status", "note",
    };
    static readonly string[] MemoryHeader = { "key", "dtype", "seq_len", "batch", "peak_mem_mib", "mem_method", "status", "seconds" };
    static readonly string[] CpuMethods = { "reference-f32", "sdpa-f32", "aaren-naive-f32", "aaren-recurrent-f32", "aaren-scan-hs-f32",
        "aaren-scan-blelloch-f32", "linear-chunked-f32", "linear-parallel-f32", "linear-recurrent-f32" };

    string Exe => Path.Combine(fx.Bundle, "attnlab-gpucheck");

    void Show(CommandResult r)
    {
        output.WriteLine($"exit {r.ExitCode} after {r.Elapsed.TotalSeconds:F1} s");
        output.WriteLine(r.Output.Length > 20000 ? r.Output[^20000..] : r.Output);
    }

    [Fact]
    public void BuildBundle_makes_a_small_self_contained_bundle_without_libtorch()
    {
        Show(fx.Build);
        Assert.Equal(0, fx.Build.ExitCode);
        Assert.Matches(@"bundle: environment/gpu/bundle\s+[0-9.]+ MiB", fx.Build.Output);
        Assert.True(File.Exists(Exe), "no apphost in the bundle");
        Assert.True(File.Exists(Path.Combine(fx.Bundle, "libLibTorchSharp.so")), "no native bridge in the bundle");
        Assert.True(File.Exists(Path.Combine(fx.Bundle, "libcoreclr.so")), "not self-contained: no runtime in the bundle");
        Assert.False(File.Exists(Path.Combine(fx.Bundle, "libtorch_cpu.so")), "libtorch must come from the GPU machine, not the bundle");
        long bytes = Directory.EnumerateFiles(fx.Bundle, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        output.WriteLine($"bundle {bytes / 1048576.0:F1} MiB");
        Assert.True(bytes < 60L * 1048576, $"bundle is {bytes / 1048576.0:F1} MiB; the device tool carries at most 64 MiB");
        Assert.True(Directory.Exists(fx.CpuLibTorch), $"the CPU libtorch is not at {fx.CpuLibTorch}");
    }

    [Fact]
    public void RunOnGpuScript_runs_the_bundle_end_to_end_on_the_cpu_libtorch()
    {
        Assert.Equal(0, fx.Build.ExitCode);
        string outDir = fx.NewOutDir("cpu-proof");
        var r = fx.Run("bash environment/gpu/run-on-gpu.sh --quick", TimeSpan.FromMinutes(5),
            new Dictionary<string, string> { ["OUT"] = outDir, ["ATTNLAB_GPU_TORCH_LIB"] = fx.CpuLibTorch, ["ATTNLAB_THREADS"] = "1" });
        Show(r);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("ldd -r: every library found, no undefined symbols", r.Output);
        Assert.Contains("CUDA not available on this machine, so CUDA-vs-CPU comparisons are skipped", r.Output);
        Assert.Contains("GPU CHECK OK", r.Output);
        foreach (var file in new[] { "run.log", "system.txt", "ldd.txt", "bundle.log", "summary.txt", "xcheck.txt" })
            Assert.True(File.Exists(Path.Combine(outDir, file)), $"{file} missing");

        // (a) libtorch came from the folder given, through the library's loader; (b) CUDA reported as absent.
        var env = new CsvTable(Path.Combine(outDir, "environment.csv")).Rows.ToDictionary(x => x["key"], x => x["value"]);
        Assert.Equal(fx.CpuLibTorch, env["torch_lib_dir"]);
        Assert.Equal("libc10.so libtorch_cpu.so libtorch.so", env["loaded_from_lib_dir"]);
        Assert.Contains("backend external", env["attentionlab"]);
        Assert.StartsWith(fx.Bundle, env["native_bridge"]);
        Assert.Equal("false", env["cuda_available"]);
        Assert.Equal("cpu", env["device"]);
        Assert.Contains(Path.Combine(fx.CpuLibTorch, "libtorch_cpu.so"), env["mapped_torch_and_cuda_libraries"]);

        // (c) correctness: every check ran, CPU against a CPU repeat, bit-identical.
        var correctness = new CsvTable(Path.Combine(outDir, "correctness.csv"));
        Assert.Equal(CorrectnessHeader, correctness.Header);
        Assert.True(correctness.Rows.Count >= 30, $"only {correctness.Rows.Count} correctness rows");
        foreach (var check in new[] { "reference attention f32 causal", "SDPA baseline f32 causal", "Aaren scan (Hillis-Steele) f32",
            "Aaren scan (Blelloch) f32", "Aaren recurrent f32", "TinyGpt training step f32" })
            Assert.Contains(correctness.Rows, x => x["check"] == check);
        Assert.Contains(correctness.Rows, x => x["case"].Contains("Hkv2"));                       // grouped-query attention
        Assert.Contains(correctness.Rows, x => x["value"] == "loss after one SGD step");
        foreach (var row in correctness.Rows)
        {
            Assert.Equal("cpu vs cpu (repeat)", row["compare"]);
            Assert.True(CsvTable.Number(row["max_abs_diff"]) == 0,
                $"{row["check"]} [{row["case"]}] {row["value"]}: CPU repeat differs by {row["max_abs_diff"]}");
            Assert.Equal("pass", row["status"]);
        }

        // (d) benchmarks: every method at every quick length, timed, with tokens/s; memory probed in fresh processes.
        var bench = new CsvTable(Path.Combine(outDir, "bench.csv"));
        Assert.Equal(BenchHeader, bench.Header);
        foreach (string key in CpuMethods)
            foreach (long t in new long[] { 64, 128, 256 })
            {
                var row = Assert.Single(bench.Rows, x => x["key"] == key && x["seq_len"] == t.ToString(CultureInfo.InvariantCulture));
                Assert.Equal("ok", row["status"]);
                Assert.Equal("cpu", row["device"]);
                Assert.True(CsvTable.Number(row["median_ms"]) > 0 && CsvTable.Number(row["tokens_per_s"]) > 0, $"{key} T={t}: no time");
                Assert.True(int.Parse(row["repeats"], CultureInfo.InvariantCulture) >= 1);
            }
        Assert.Equal(CpuMethods.Length * 3, bench.Rows.Count);                                   // bf16 rows are CUDA-only
        var memory = new CsvTable(Path.Combine(outDir, "memory.csv"));
        Assert.Equal(MemoryHeader, memory.Header);
        Assert.Equal(CpuMethods.Length, memory.Rows.Count);
        Assert.All(memory.Rows, x => Assert.True(x["status"] == "ok" && CsvTable.Number(x["peak_mem_mib"]) >= 0, $"{x["key"]}: {x["status"]}"));
        Assert.All(bench.Rows.Where(x => x["seq_len"] == "256"), x => Assert.NotEqual("", x["peak_mem_mib"]));
        // The probes measure something: reference attention's [B, H, T, T] scores alone are 2 MiB at T = 256. (Only the
        // largest is asserted: peak RSS is page-granular and was seen to miss a single allocation now and then.)
        Assert.True(memory.Rows.Max(x => CsvTable.Number(x["peak_mem_mib"])) > 1, "no memory probe saw more than 1 MiB");

        // The cross-check files follow the layout xcheck.py reads: recompute a few outputs here in float64.
        CheckCrossCheckLayout(Path.Combine(outDir, "xcheck"));
        Assert.Contains("skipped: Python torch is not importable here", File.ReadAllText(Path.Combine(outDir, "xcheck.txt")));
    }

    static void CheckCrossCheckLayout(string dir)
    {
        var meta = File.ReadAllLines(Path.Combine(dir, "meta.txt")).Where(l => l.Contains('='))
            .ToDictionary(l => l[..l.IndexOf('=')], l => l[(l.IndexOf('=') + 1)..]);
        int b = int.Parse(meta["B"]), t = int.Parse(meta["T"]), h = int.Parse(meta["H"]), d = int.Parse(meta["D"]);
        double scale = double.Parse(meta["scale"], CultureInfo.InvariantCulture);
        Assert.Equal("B,T,H,D", meta["layout"]);
        float[] Read(string name)
        {
            var bytes = File.ReadAllBytes(Path.Combine(dir, name));
            Assert.Equal(b * t * h * d * 4, bytes.Length);
            var f = new float[bytes.Length / 4];
            Buffer.BlockCopy(bytes, 0, f, 0, bytes.Length);
            return f;
        }
        float[] q = Read("q.f32"), k = Read("k.f32"), v = Read("v.f32"), device = Read("out_device.f32"), cpu = Read("out_cpu.f32");
        int At(int bi, int ti, int hi, int di) => ((bi * t + ti) * h + hi) * d + di;
        foreach (var (bi, ti, hi) in new[] { (0, 0, 0), (1, t - 1, h - 1), (0, t / 2, 1) })
        {
            var s = Enumerable.Range(0, ti + 1).Select(j => scale * Enumerable.Range(0, d).Sum(
                x => (double)q[At(bi, ti, hi, x)] * k[At(bi, j, hi, x)])).ToArray();
            double max = s.Max(), z = s.Sum(x => Math.Exp(x - max));
            for (int x = 0; x < d; x++)
            {
                double o = Enumerable.Range(0, ti + 1).Sum(j => Math.Exp(s[j] - max) / z * v[At(bi, j, hi, x)]);
                Assert.True(Math.Abs(o - cpu[At(bi, ti, hi, x)]) < 1e-5, $"out_cpu[{bi},{ti},{hi},{x}] = {cpu[At(bi, ti, hi, x)]}, float64 gives {o}");
                Assert.True(Math.Abs(o - device[At(bi, ti, hi, x)]) < 1e-5, $"out_device[{bi},{ti},{hi},{x}] = {device[At(bi, ti, hi, x)]}, float64 gives {o}");
            }
        }
    }

    [Fact]
    public void A_bundle_that_computes_wrong_numbers_exits_non_zero()
    {
        Assert.Equal(0, fx.Build.ExitCode);
        string outDir = fx.NewOutDir("perturbed");
        var r = fx.Run($"'{Exe}' --quick --no-bench --perturb 1e-3 --out '{outDir}'", TimeSpan.FromMinutes(3),
            new Dictionary<string, string> { ["ATTNLAB_TORCH_LIB_DIR"] = fx.CpuLibTorch, ["ATTNLAB_THREADS"] = "1" });
        Show(r);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("FAILED:", r.Output);
        Assert.Contains("correctness comparison(s) out of tolerance", r.Output);
        var rows = new CsvTable(Path.Combine(outDir, "correctness.csv")).Rows;
        Assert.All(rows, x => Assert.Equal("FAIL", x["status"]));
        Assert.False(File.Exists(Path.Combine(outDir, "bench.csv")), "--no-bench still benchmarked");
    }

    [Fact]
    public void A_missing_libtorch_folder_stops_with_a_clear_message()
    {
        Assert.Equal(0, fx.Build.ExitCode);
        var r = fx.Run($"'{Exe}' --quick --out '{fx.NewOutDir("no-libtorch")}'", TimeSpan.FromMinutes(2),
            new Dictionary<string, string> { ["ATTNLAB_TORCH_LIB_DIR"] = "/nonexistent/libtorch/lib" });
        Show(r);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("FAILED: libtorch did not load", r.Output);
        Assert.Contains("ATTNLAB_TORCH_LIB_DIR='/nonexistent/libtorch/lib' is not a folder", r.Output);
    }

    [Fact]
    public void Undefined_symbols_stop_the_gpu_script_before_the_bundle_runs()
    {
        Assert.Equal(0, fx.Build.ExitCode);
        // A libtorch that does not fit: libc10 under all three names, so everything libtorch_cpu exports is missing.
        string stub = fx.NewOutDir("stub-libtorch");
        foreach (var name in new[] { "libc10.so", "libtorch.so", "libtorch_cpu.so" })
            File.CreateSymbolicLink(Path.Combine(stub, name), Path.Combine(fx.CpuLibTorch, "libc10.so"));
        string outDir = fx.NewOutDir("undefined-symbols");
        var r = fx.Run("bash environment/gpu/run-on-gpu.sh --quick", TimeSpan.FromMinutes(2),
            new Dictionary<string, string> { ["OUT"] = outDir, ["ATTNLAB_GPU_TORCH_LIB"] = stub });
        Show(r);
        Assert.Equal(5, r.ExitCode);
        Assert.Contains("STOP: libLibTorchSharp.so does not link against this libtorch", r.Output);
        Assert.Matches(@"\d+ undefined symbol\(s\)", r.Output);
        Assert.Contains("GPU CHECK FAILED: TorchSharp's native bridge does not fit this libtorch", r.Output);
        string listed = File.ReadAllText(Path.Combine(outDir, "undefined-symbols.txt"));
        Assert.Contains("_ZN", listed);                                                          // mangled
        Assert.Contains("torch::", listed);                                                      // and demangled
        Assert.False(File.Exists(Path.Combine(outDir, "bundle.log")), "the bundle ran although ldd -r found undefined symbols");
    }
}
