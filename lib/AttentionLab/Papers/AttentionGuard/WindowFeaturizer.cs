namespace AttentionLab.Papers.AttentionGuard;

/// <summary>
/// The spec's per-window features over an event stream (§2): event rate; mean and CV of inter-event gaps; idle fraction
/// (gaps &gt; 5 s); scroll velocity mean and variance; back-navigation and tab-switch rates; dwell on the current item;
/// answer latency, error rate and answer rate on embedded questions; time on task.
/// </summary>
/// <remarks>
/// Gaps are measured between the window's start, its events and its end, so a window with N events has N + 1 gaps and
/// every feature is defined: mean gap = L / (N + 1), CV = sd / mean of those gaps (0 for one gap), idle fraction =
/// Σ_{gap &gt; 5 s} gap / L. Dwell = the longest stretch of the window with no back-navigation or tab switch. Scroll and
/// answer features are 0 in a window without scrolls or answers (their rates, also features, tell the forest so). The
/// last window of a session may be shorter than L; it keeps its true length (nothing is truncated or padded).
/// </remarks>
public static class WindowFeaturizer
{
    /// <summary>Seconds of silence that count as idle.</summary>
    public const double IdleGapSeconds = 5;

    /// <summary>Names of the raw features, in column order.</summary>
    public static IReadOnlyList<string> Names { get; } =
    [
        "event_rate", "gap_mean", "gap_cv", "idle_fraction", "scroll_velocity_mean", "scroll_velocity_var", "back_nav_per_min",
        "tab_switch_per_min", "dwell", "answer_latency_mean", "error_rate", "answers_per_min", "time_on_task",
    ];

    /// <summary>Index of time on task (not z-scored per learner: it is the clock, not behaviour).</summary>
    public const int TimeOnTask = 12;

    /// <summary>Features [windows][<see cref="Names"/>] of consecutive windows of length <paramref name="window"/> over <paramref name="stream"/>.</summary>
    public static double[][] Featurize(EventStream stream, TimeSpan window)
    {
        EventStream.Validate(stream, nameof(stream));
        double length = window.TotalSeconds;
        if (!(length > 0)) throw new ArgumentException($"window must be longer than zero, got {window}.", nameof(window));
        int count = (int)Math.Ceiling(stream.Duration / length - 1e-9);
        var result = new double[count][];
        int next = 0;
        for (int w = 0; w < count; w++)
        {
            double start = w * length, end = Math.Min(start + length, stream.Duration);
            int first = next;
            while (next < stream.Events.Count && stream.Events[next].Time < end) next++;
            result[w] = Window(stream.Events, first, next, start, end);
        }
        return result;
    }

    /// <summary>The features of events [<paramref name="first"/>, <paramref name="last"/>) in the window [start, end).</summary>
    static double[] Window(IReadOnlyList<InteractionEvent> events, int first, int last, double start, double end)
    {
        double length = end - start, minutes = length / 60;
        int n = last - first;
        var gaps = new double[n + 1];
        double previous = start;
        for (int i = 0; i < n; i++) { gaps[i] = events[first + i].Time - previous; previous = events[first + i].Time; }
        gaps[n] = end - previous;
        double gapMean = gaps.Average();                                                            // L / (N + 1)
        double gapSd = Math.Sqrt(gaps.Select(g => (g - gapMean) * (g - gapMean)).Average());
        double idle = gaps.Where(g => g > IdleGapSeconds).Sum() / length;                          // Σ_{gap > 5 s} gap / L
        var scrolls = Enumerable.Range(first, n).Where(i => events[i].Kind == EventKind.Scroll).Select(i => events[i].Value).ToArray();
        double scrollMean = scrolls.Length > 0 ? scrolls.Average() : 0;
        double scrollVar = scrolls.Length > 0 ? scrolls.Select(v => (v - scrollMean) * (v - scrollMean)).Average() : 0;
        int back = 0, switches = 0, answers = 0, errors = 0;
        double latency = 0, dwell = 0, lastMove = start;
        for (int i = first; i < last; i++)
        {
            var e = events[i];
            switch (e.Kind)
            {
                case EventKind.BackNavigation: back++; break;
                case EventKind.TabSwitch: switches++; break;
                case EventKind.Answer: answers++; latency += e.Value; if (e.Error) errors++; break;
            }
            if (e.Kind is EventKind.BackNavigation or EventKind.TabSwitch)
            {
                dwell = Math.Max(dwell, e.Time - lastMove);                                        // stretch on one item
                lastMove = e.Time;
            }
        }
        dwell = Math.Max(dwell, end - lastMove);
        return
        [
            n / length, gapMean, gapMean > 0 ? gapSd / gapMean : 0, idle, scrollMean, scrollVar, back / minutes, switches / minutes, dwell,
            answers > 0 ? latency / answers : 0, answers > 0 ? (double)errors / answers : 0, answers / minutes, start,
        ];
    }

    /// <summary>
    /// Per-learner z-scores of every feature but time on task: z = (x − mean over the learner's windows) / sd (population);
    /// 0 where the learner's sd is 0. Baseline normalisation as the spec asks; no labels are used.
    /// </summary>
    public static double[][] LearnerZScores(IReadOnlyList<double[]> learnerWindows)
    {
        ArgumentNullException.ThrowIfNull(learnerWindows);
        if (learnerWindows.Count == 0) throw new ArgumentException("a learner needs at least one window to z-score.", nameof(learnerWindows));
        int f = learnerWindows[0].Length;
        if (learnerWindows.Any(w => w.Length != f)) throw new ArgumentException("windows differ in feature count.", nameof(learnerWindows));
        if (learnerWindows.Any(w => w.Any(double.IsNaN))) throw new ArgumentException("a window holds NaN features.", nameof(learnerWindows));
        var z = learnerWindows.Select(_ => new double[f - 1]).ToArray();
        int column = 0;
        for (int j = 0; j < f; j++)
        {
            if (j == TimeOnTask) continue;
            double mean = learnerWindows.Average(w => w[j]);
            double sd = Math.Sqrt(learnerWindows.Average(w => (w[j] - mean) * (w[j] - mean)));
            for (int i = 0; i < learnerWindows.Count; i++) z[i][column] = sd > 1e-12 ? (learnerWindows[i][j] - mean) / sd : 0;
            column++;
        }
        return z;
    }
}
