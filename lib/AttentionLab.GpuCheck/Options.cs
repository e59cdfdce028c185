using System.Globalization;

namespace AttentionLab.GpuCheck;

/// <summary>What one run does. Parsed from the command line (<see cref="Parse"/>); see <see cref="Usage"/>.</summary>
public sealed record Options
{
    public string OutDir { get; init; } = Environment.GetEnvironmentVariable("ATTNLAB_GPU_OUT") is { Length: > 0 } o ? o : "gpu-out";
    /// <summary>Small sizes for a CPU proof (seconds); otherwise the full benchmark set for a GPU.</summary>
    public bool Quick { get; init; }
    /// <summary>auto (CUDA when available), cpu or cuda.</summary>
    public string Device { get; init; } = "auto";
    public bool Bench { get; init; } = true;
    public bool Memory { get; init; } = true;
    /// <summary>Seconds for the whole run; benchmarks and memory probes stop early (and say so) when it is spent.</summary>
    public double TimeBudgetSeconds { get; init; } = double.NaN;
    /// <summary>Adds this to every compared value of the second run (a self-test: any value > 0 must fail the run).</summary>
    public double Perturb { get; init; }
    /// <summary>Internal: measure the memory of one benchmark case in this (fresh) process and print one line.</summary>
    public string? ChildMethod { get; init; }
    public long ChildSeqLen { get; init; }

    public double Budget => double.IsNaN(TimeBudgetSeconds) ? (Quick ? 120 : 300) : TimeBudgetSeconds;

    public const string Usage = """
        attnlab-gpucheck: loads libtorch (ATTNLAB_TORCH_LIB_DIR), reports CUDA, checks AttentionLab on CUDA against CPU,
        and runs the benchmark set. Writes environment.csv, correctness.csv, bench.csv, memory.csv, summary.txt and
        xcheck/ under --out.
          --out DIR          output folder (default $ATTNLAB_GPU_OUT, else ./gpu-out)
          --quick            small sizes: the CPU proof (seconds)
          --device D         auto (default: CUDA when available), cpu, cuda
          --no-bench         correctness only
          --no-memory        benchmarks without the per-case memory probes (one fresh process per probe)
          --time-budget S    seconds for the whole run (default 300, quick 120); later cases are skipped, with a note
          --perturb X        self-test: add X to the compared side, so every correctness check must fail
        Exit codes: 0 all checks passed; 1 a correctness check failed its tolerance; 2 bad arguments or libtorch did
        not load; 3 an unexpected error.
        """;

    public static Options Parse(IReadOnlyList<string> args)
    {
        var o = new Options();
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            string Next() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"{a} needs a value.");
            double Number(string text) => double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v >= 0
                ? v : throw new ArgumentException($"{a} '{text}' is not a non-negative number.");
            o = a switch
            {
                "--out" => o with { OutDir = Next() },
                "--quick" => o with { Quick = true },
                "--device" => o with { Device = DeviceName(Next()) },
                "--no-bench" => o with { Bench = false },
                "--no-memory" => o with { Memory = false },
                "--time-budget" => o with { TimeBudgetSeconds = Number(Next()) },
                "--perturb" => o with { Perturb = Number(Next()) },
                "--child-memory" => o with { ChildMethod = Next() },
                "--child-seq" => o with { ChildSeqLen = (long)Number(Next()) },
                "-h" or "--help" => throw new HelpRequested(),
                _ => throw new ArgumentException($"unknown argument '{a}'."),
            };
        }
        return o;
    }

    static string DeviceName(string text) => text.ToLowerInvariant() switch
    {
        "auto" or "cpu" or "cuda" => text.ToLowerInvariant(),
        _ => throw new ArgumentException($"--device must be auto, cpu or cuda, got '{text}'."),
    };

    /// <summary>The arguments that make a child process measure with the same sizes as this run.</summary>
    public IEnumerable<string> ChildArguments(string methodKey, long seqLen)
    {
        yield return "--child-memory"; yield return methodKey;
        yield return "--child-seq"; yield return seqLen.ToString(CultureInfo.InvariantCulture);
        yield return "--device"; yield return Device;
        if (Quick) yield return "--quick";
    }
}

/// <summary>-h / --help.</summary>
public sealed class HelpRequested : Exception { }
