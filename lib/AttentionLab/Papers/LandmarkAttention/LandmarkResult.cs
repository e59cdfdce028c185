using AttentionLab.Plots;
using Microsoft.Data.Analysis;
using Plotly.NET;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LandmarkAttention;

/// <summary>One (length, method, k) evaluation: passkey-digit accuracy and what the last query touches.</summary>
/// <param name="N">context length in ordinary tokens.</param>
/// <param name="K">blocks retrieved (0 for full attention and the window).</param>
/// <param name="Method">how the sequence was read.</param>
/// <param name="Accuracy">share of passkey digits predicted right.</param>
/// <param name="AttendedTokens">keys the last query touches per head and layer (landmark keys scored + retrieved + chunk; or the visible window).</param>
/// <param name="KvBytesPerStep">float32 K/V bytes the last step reads over all layers.</param>
/// <param name="InsertedLength">n + n/ℓ_b, the full sequence with landmarks.</param>
public sealed record LandmarkRow(int N, int K, LandmarkMethod Method, double Accuracy, long AttendedTokens, long KvBytesPerStep, long InsertedLength)
{
    /// <summary>Label used in tables and legends.</summary>
    public string Label => Method switch
    {
        LandmarkMethod.Landmark => $"landmark k={K}",
        LandmarkMethod.LandmarkNoRemap => $"landmark k={K}, no remap",
        LandmarkMethod.FullAttention => "full attention",
        _ => "window",
    };
}

/// <summary>The retrieval softmax of one final query over the stored blocks, per layer (mean over heads), and the needle's blocks.</summary>
public sealed record LandmarkRetrievalDemo(int N, double Depth, int TopK, IReadOnlyList<double[]> PerLayer, int[] NeedleBlocks)
{
    /// <summary>The layer that puts the most retrieval mass on the needle's blocks.</summary>
    public int BestLayer => Enumerable.Range(0, PerLayer.Count).OrderByDescending(l => NeedleMass(l)).First();
    /// <summary>Retrieval probability on the needle's blocks in layer <paramref name="layer"/>.</summary>
    public double NeedleMass(int layer) => NeedleBlocks.Where(b => b < PerLayer[layer].Length).Sum(b => PerLayer[layer][b]);
}

/// <summary>What <see cref="LandmarkExperiment.Run"/> measured.</summary>
public sealed record LandmarkResult(LandmarkExperiment.Config Config, IReadOnlyList<LandmarkRow> Rows, LandmarkRetrievalDemo Retrieval,
    Tensor DemoWeights, double DemoMaxError) : IDisposable
{
    /// <summary>Columns n, k, method, accuracy, attended tokens, KV bytes per step.</summary>
    public DataFrame ToDataFrame() => new(
        new Int32DataFrameColumn("n", Rows.Select(r => r.N)),
        new Int32DataFrameColumn("k", Rows.Select(r => r.K)),
        new StringDataFrameColumn("method", Rows.Select(r => r.Label)),
        new DoubleDataFrameColumn("accuracy", Rows.Select(r => Math.Round(r.Accuracy, 4))),
        new Int64DataFrameColumn("attended tokens", Rows.Select(r => r.AttendedTokens)),
        new Int64DataFrameColumn("KV bytes/step", Rows.Select(r => r.KvBytesPerStep)));

    /// <summary>Accuracy of a method (and k for the landmark methods) at length n.</summary>
    public double Accuracy(int n, LandmarkMethod method, int? k = null) =>
        Rows.First(r => r.N == n && r.Method == method && (k is null || r.K == k)).Accuracy;

    /// <summary>One series per method label: y(n) picked by <paramref name="value"/>.</summary>
    public IReadOnlyList<Series> SeriesBy(Func<LandmarkRow, double> value) => Rows.GroupBy(r => r.Label)
        .Select(g => new Series(g.Key, g.Select(r => (double)r.N).ToArray(), g.Select(value).ToArray())).ToList();

    /// <summary>Heatmap of the demo's grouped weights (zero landmark columns, block structure).</summary>
    public GenericChart WeightsHeatmap()
    {
        int t = (int)DemoWeights.shape[0], lb = 4;
        var labels = Enumerable.Range(0, t).Select(j => (j + 1) % (lb + 1) == 0 ? $"L{j / (lb + 1)}" : $"{j}").ToList();
        return Charts.Heatmap(DemoWeights, $"grouped weights w_ij (ℓ_b = {lb}; landmark columns are 0)", labels, labels);
    }

    /// <summary>Bar: retrieval probability per stored block for the final query, needle blocks highlighted.</summary>
    public GenericChart RetrievalBars()
    {
        int layer = Retrieval.BestLayer;
        var p = Retrieval.PerLayer[layer];
        var names = Enumerable.Range(0, p.Length).Select(c => $"block {c}").ToList();
        var needle = p.Select((v, c) => Retrieval.NeedleBlocks.Contains(c) ? v : 0).ToList();
        var other = p.Select((v, c) => Retrieval.NeedleBlocks.Contains(c) ? 0 : v).ToList();
        return BarCharts.Stacked(names, new[] { new BarSegment("passkey block", needle), new BarSegment("other blocks", other) },
            $"landmark retrieval softmax of the QUERY token (n = {Retrieval.N}, layer {layer}, mean over heads)", "retrieval probability");
    }

    public GenericChart AccuracyChart() => Charts.Lines(SeriesBy(r => r.Accuracy), "passkey accuracy vs context length", "n (ordinary tokens)", "digit accuracy", logX: true);

    public GenericChart AttendedChart() => Charts.Lines(SeriesBy(r => r.AttendedTokens), "keys the last query touches vs n", "n (ordinary tokens)", "attended tokens per query", logX: true, logY: true);

    /// <summary>
    /// The claim at this size; throws naming what failed: fast grouped weights = naive (≤ 1e-12) and, at the longest
    /// length, landmark (smallest k ≥ 2, or the first k) beats the window baseline by ≥ MinGain accuracy.
    /// </summary>
    public void Check()
    {
        var failures = new List<string>();
        if (!(DemoMaxError <= 1e-12)) failures.Add($"fast vs naive grouped weights differ by {DemoMaxError:E2}");
        int n = Config.EvalLengths.Max(), k = Config.TopKs.Contains(2) ? 2 : Config.TopKs[0];
        double landmark = Accuracy(n, LandmarkMethod.Landmark, k), window = Accuracy(n, LandmarkMethod.Window);
        if (!(landmark - window >= Config.MinGain))
            failures.Add($"at n = {n} landmark k={k} reaches {landmark:P1} vs window {window:P1}: gain {landmark - window:P1} < {Config.MinGain:P0}");
        if (failures.Count > 0) throw new InvalidOperationException("claim failed at this size: " + string.Join("; ", failures));
    }

    public void Dispose() => DemoWeights.Dispose();
}
