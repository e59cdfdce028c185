using Microsoft.Data.Analysis;

namespace AttentionLab.Attention;

/// <summary>
/// What one layer's cache did in one decode step.
/// </summary>
/// <param name="Layer">layer index (as given to the cache).</param>
/// <param name="Step">0-based index of the token whose query attended (t − 1 after t tokens).</param>
/// <param name="AttendedTokens">keys the query attended to, per query head.</param>
/// <param name="KvBytesHeld">bytes of the keys and values kept after the step (B · Hkv · entries · (D + Dv) · element size).</param>
/// <param name="KvBytesAllocated">bytes of the cache's buffers, unused capacity included.</param>
/// <param name="KvBytesRead">bytes of keys and values the attention read in this step (B · Σ_kv heads attended · (D + Dv) · element size).</param>
public sealed record DecodeStepStats(int Layer, long Step, long[] AttendedTokens, long KvBytesHeld, long KvBytesAllocated, long KvBytesRead)
{
    public double AttendedMean => AttendedTokens.Average();
}

/// <summary>Per-step, per-layer decode statistics in the order they were recorded.</summary>
public sealed class DecodeTrace : IReadOnlyList<DecodeStepStats>
{
    readonly List<DecodeStepStats> steps = new();

    public DecodeTrace() { }
    public DecodeTrace(IEnumerable<DecodeStepStats> steps) => this.steps.AddRange(steps);

    public void Add(DecodeStepStats stats) => steps.Add(stats ?? throw new ArgumentNullException(nameof(stats)));
    public int Count => steps.Count;
    public DecodeStepStats this[int index] => steps[index];
    public IEnumerator<DecodeStepStats> GetEnumerator() => steps.GetEnumerator();
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Σ of <see cref="DecodeStepStats.KvBytesRead"/> over all steps and layers.</summary>
    public long TotalBytesRead => steps.Sum(s => s.KvBytesRead);
    /// <summary>Largest Σ over layers of <see cref="DecodeStepStats.KvBytesHeld"/> at one step.</summary>
    public long PeakBytesHeld => steps.Count == 0 ? 0 : steps.GroupBy(s => s.Step).Max(g => g.Sum(s => s.KvBytesHeld));

    /// <summary>Columns: layer, step, attended_mean, attended_min, attended_max, kv_bytes_held, kv_bytes_allocated, kv_bytes_read.</summary>
    public DataFrame ToDataFrame() => new(
        new Int32DataFrameColumn("layer", steps.Select(s => s.Layer)),
        new Int64DataFrameColumn("step", steps.Select(s => s.Step)),
        new DoubleDataFrameColumn("attended_mean", steps.Select(s => s.AttendedMean)),
        new Int64DataFrameColumn("attended_min", steps.Select(s => s.AttendedTokens.Min())),
        new Int64DataFrameColumn("attended_max", steps.Select(s => s.AttendedTokens.Max())),
        new Int64DataFrameColumn("kv_bytes_held", steps.Select(s => s.KvBytesHeld)),
        new Int64DataFrameColumn("kv_bytes_allocated", steps.Select(s => s.KvBytesAllocated)),
        new Int64DataFrameColumn("kv_bytes_read", steps.Select(s => s.KvBytesRead)));
}
