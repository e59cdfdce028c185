using AttentionLab.Core;
using Microsoft.Data.Analysis;

namespace AttentionLab.Bench;

/// <summary>
/// One timing of a "length n → time per method" sweep, as <see cref="Sweep"/> reads it. A paper's point record implements
/// it when it needs fields of its own (e.g. the routing layer's cluster count); otherwise it uses <see cref="SweepPoint"/>.
/// </summary>
public interface ISweepPoint
{
    /// <summary>The method timed.</summary>
    string Method { get; }
    /// <summary>The length n (tokens, context or sequence length).</summary>
    int SeqLen { get; }
    /// <summary>Median wall-clock time of one call (ms).</summary>
    double MedianMs { get; }
    /// <summary>Peak-memory growth of one call (MiB); null where not measured.</summary>
    double? PeakMiB => null;
    /// <summary>What was timed when a sweep times more than one kind of call (e.g. "forward", "forward+backward"); null otherwise.</summary>
    string? Pass => null;
}

/// <summary>
/// One timing of a length sweep: method, n, median ms of one call, peak-memory growth in MiB where measured, and the pass
/// timed where a sweep has several.
/// </summary>
public sealed record SweepPoint(string Method, int SeqLen, double MedianMs, double? PeakMiB = null, string? Pass = null) : ISweepPoint;

/// <summary>
/// One token of a streaming decode: the model, t (tokens decoded so far), the latency of decoding the t-th token (ms) and
/// the bytes of the state held after it (KV cache, recurrent state). Shared by the papers that stream a model token by token.
/// </summary>
public sealed record StreamPoint(string Model, int T, double LatencyMs, long StateBytes);

/// <summary>
/// What a length sweep says, computed once for every paper: the log–log slope of time against n per method (≈ 1 linear,
/// ≈ 2 quadratic), the crossover (the smallest n from which one method is faster than another at every larger n), the
/// speed-up of one method over another at n, and the table. Functions that take a <c>pass</c> read only that pass's points;
/// without one, the points must all share one pass.
/// </summary>
public static class Sweep
{
    /// <summary>Fitted log-log slope b of time ∝ n^b per method (methods with ≥ 2 lengths).</summary>
    public static IReadOnlyDictionary<string, double> Slopes<T>(IEnumerable<T> points, string? pass = null) where T : ISweepPoint =>
        Numerics.SlopesByMethod(Of(points, pass), p => p.Method, p => p.SeqLen, p => p.MedianMs);

    /// <summary>Fitted log-log slope of peak-memory growth vs n per method, over the points with a positive measurement.</summary>
    public static IReadOnlyDictionary<string, double> MemorySlopes<T>(IEnumerable<T> points, string? pass = null) where T : ISweepPoint =>
        Numerics.SlopesByMethod(Of(points, pass).Where(p => p.PeakMiB is > 0), p => p.Method, p => p.SeqLen, p => p.PeakMiB!.Value);

    /// <summary>
    /// The smallest measured n from which <paramref name="method"/> is faster than <paramref name="baseline"/> at every larger
    /// n both ran at; null when it never is (at these lengths). See <see cref="Numerics.Crossover{T}"/>.
    /// </summary>
    public static int? Crossover<T>(IEnumerable<T> points, string method, string baseline, string? pass = null) where T : ISweepPoint
    {
        ArgumentException.ThrowIfNullOrEmpty(method);
        ArgumentException.ThrowIfNullOrEmpty(baseline);
        return Numerics.Crossover(Of(points, pass), p => p.Method, p => p.SeqLen, p => p.MedianMs, method, baseline);
    }

    /// <summary>Baseline ms ÷ method ms at n (same pass; &gt; 1: <paramref name="method"/> is faster), or null when either did not run there.</summary>
    public static double? Speedup<T>(IEnumerable<T> points, string method, string baseline, int seqLen, string? pass = null) where T : ISweepPoint
    {
        var list = Of(points, pass).ToList();
        return list.FirstOrDefault(p => p.Method == method && p.SeqLen == seqLen) is { } a
               && list.FirstOrDefault(p => p.Method == baseline && p.SeqLen == seqLen && p.Pass == a.Pass) is { } b
            ? b.MedianMs / a.MedianMs : null;
    }

    /// <summary>
    /// Columns pass (only when a point names one), method, seq_len, median_ms, peak_mib, then one speed-up column per
    /// (column, baseline): baseline ms ÷ this row's ms at its n and pass (empty where the baseline did not run).
    /// </summary>
    public static DataFrame ToDataFrame(IReadOnlyList<SweepPoint> points, params (string Column, string Baseline)[] speedups)
    {
        ArgumentNullException.ThrowIfNull(points);
        ArgumentNullException.ThrowIfNull(speedups);
        var frame = Tables.From(points.Select(p => new Row(p.Pass, p.Method, p.SeqLen, p.MedianMs, p.PeakMiB)));
        if (points.All(p => p.Pass is null)) frame.Columns.Remove("pass");
        double? Ratio(SweepPoint p, string baseline) =>
            points.FirstOrDefault(b => b.Method == baseline && b.SeqLen == p.SeqLen && b.Pass == p.Pass) is { } b ? b.MedianMs / p.MedianMs : null;
        foreach (var (column, baseline) in speedups)
            frame.Columns.Add(new DoubleDataFrameColumn(column, points.Select(p => Ratio(p, baseline))));
        return frame;
    }

    sealed record Row(string? Pass, string Method, int SeqLen, double MedianMs, double? PeakMiB);

    /// <summary>The points of <paramref name="pass"/>; null: all of them, which must then share one pass.</summary>
    public static IEnumerable<T> Of<T>(IEnumerable<T> points, string? pass) where T : ISweepPoint
    {
        ArgumentNullException.ThrowIfNull(points);
        var list = points.ToList();
        if (list.Any(p => p is null)) throw new ArgumentException("points must not contain null.", nameof(points));
        if (list.Any(p => p.SeqLen <= 0)) throw new ArgumentException("every point's length must be positive.", nameof(points));
        if (pass is not null) return list.Where(p => p.Pass == pass);
        if (list.Select(p => p.Pass).Distinct().Count() > 1)
            throw new ArgumentException("the points mix passes (e.g. forward and forward+backward timings): name the pass.", nameof(pass));
        return list;
    }
}
