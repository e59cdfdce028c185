namespace AttentionLab.Papers.TwinHpo;

/// <summary>
/// Topic-quality metrics of the paper: NPMI coherence (gensim c_npmi), inverted RBO (OCTIS), topic diversity (Dieng et al.).
/// </summary>
/// <remarks>
/// NPMI(wᵢ, wⱼ) = log((P(wᵢ, wⱼ) + ε) / (P(wᵢ) P(wⱼ))) / (−log(P(wᵢ, wⱼ) + ε)), ε = 1e-12; P from boolean sliding windows of
/// <c>window</c> tokens (a document shorter than the window is one window); topic score = mean over its top-word pairs; model = mean
/// over topics. Inverted RBO = 1 − mean over topic pairs of RBO_ext(p) of the top-word lists (Webber et al. 2010, eq. 32).
/// Diversity = |unique words in the top-n of all topics| / (n · K).
/// </remarks>
public static class TopicMetrics
{
    /// <summary>gensim's ε in c_npmi.</summary>
    public const double Epsilon = 1e-12;

    /// <summary>Boolean-window document frequencies of the tracked words: windows, count per word, count per pair.</summary>
    internal sealed record WindowCounts(long Windows, long[] Single, long[,] Pair);

    /// <summary>
    /// Model NPMI: mean over topics of the mean NPMI over the top-word pairs (i &lt; j). A pair with a word absent from the reference corpus is
    /// undefined and skipped; a topic with no defined pair scores NaN (and so does the model).
    /// </summary>
    public static double Npmi(int[][] topTopicWords, Corpus corpus, int window = 10) => NpmiPerTopic(topTopicWords, corpus, window).Average();

    /// <summary>NPMI of each topic (mean over its top-word pairs).</summary>
    public static double[] NpmiPerTopic(int[][] topTopicWords, Corpus corpus, int window = 10)
    {
        var (tracked, counts) = Count(topTopicWords, corpus, window, naive: false);
        return Score(topTopicWords, tracked, counts);
    }

    internal static double[] Score(int[][] topics, Dictionary<int, int> tracked, WindowCounts c)
    {
        double n = c.Windows;
        return topics.Select(topic =>
        {
            double sum = 0;
            int pairs = 0;
            for (int a = 0; a < topic.Length; a++)
                for (int b = a + 1; b < topic.Length; b++)
                {
                    int i = tracked[topic[a]], j = tracked[topic[b]];
                    double pi = c.Single[i] / n, pj = c.Single[j] / n, pij = c.Pair[i, j] / n;
                    if (pi == 0 || pj == 0) continue;   // a word absent from the reference corpus: the pair is undefined, skipped
                    double npmi = Math.Log((pij + Epsilon) / (pi * pj)) / -Math.Log(pij + Epsilon);   // NPMI(wᵢ, wⱼ)
                    sum += npmi;
                    pairs++;
                }
            return pairs == 0 ? double.NaN : sum / pairs;
        }).ToArray();
    }

    internal static (Dictionary<int, int> Tracked, WindowCounts Counts) Count(int[][] topics, Corpus corpus, int window, bool naive)
    {
        ArgumentNullException.ThrowIfNull(topics);
        ArgumentNullException.ThrowIfNull(corpus);
        if (window < 1) throw new ArgumentException($"window must be ≥ 1, got {window}.", nameof(window));
        if (topics.Length == 0) throw new ArgumentException("no topics.", nameof(topics));
        var tracked = new Dictionary<int, int>();
        foreach (var t in topics)
        {
            if (t is null || t.Length == 0) throw new ArgumentException("every topic needs at least one word.", nameof(topics));
            foreach (int w in t)
            {
                if ((uint)w >= (uint)corpus.V) throw new ArgumentException($"word id {w} outside the vocabulary [0, {corpus.V}).", nameof(topics));
                if (t.Count(x => x == w) > 1) throw new ArgumentException($"topic repeats word id {w}.", nameof(topics));
                tracked.TryAdd(w, tracked.Count);
            }
        }
        int m = tracked.Count;
        var single = new long[m];
        var pair = new long[m, m];
        long windows = 0;
        foreach (var doc in corpus.Docs)
        {
            if (doc.Length == 0) continue;
            int last = Math.Max(0, doc.Length - window);   // windows start at 0 … n − w (one window when n ≤ w)
            if (naive)
            {
                for (int s = 0; s <= last; s++)
                {
                    var set = new HashSet<int>(doc.Skip(s).Take(window));
                    windows++;
                    foreach (var (w, i) in tracked)
                    {
                        if (!set.Contains(w)) continue;
                        single[i]++;
                        foreach (var (w2, j) in tracked) if (j != i && set.Contains(w2)) pair[i, j]++;
                    }
                }
                continue;
            }
            var inWindow = new int[m];   // count of each tracked word in the current window
            var present = new List<int>(m);
            int end = Math.Min(window, doc.Length);
            for (int t = 0; t < end; t++) if (tracked.TryGetValue(doc[t], out int i)) inWindow[i]++;
            for (int s = 0; ; s++)
            {
                windows++;
                present.Clear();
                for (int i = 0; i < m; i++) if (inWindow[i] > 0) present.Add(i);
                foreach (int i in present)
                {
                    single[i]++;
                    foreach (int j in present) if (j != i) pair[i, j]++;
                }
                if (s >= last) break;
                if (tracked.TryGetValue(doc[s], out int outId)) inWindow[outId]--;            // slide: drop token s,
                if (tracked.TryGetValue(doc[s + window], out int inId)) inWindow[inId]++;     // add token s + w
            }
        }
        if (windows == 0) throw new ArgumentException("the corpus has no tokens.", nameof(corpus));
        return (tracked, new WindowCounts(windows, single, pair));
    }

    /// <summary>
    /// Rank-biased overlap, extrapolated (Webber et al. 2010, eq. 32) for two lists of equal depth k:
    /// RBO_ext = (X_k / k) pᵏ + ((1 − p) / p) Σ_{d=1..k} (X_d / d) p^d, X_d = |S_{:d} ∩ T_{:d}|. Identical → 1; disjoint → 0.
    /// </summary>
    public static double Rbo(IReadOnlyList<int> s, IReadOnlyList<int> t, double p = 0.9)
    {
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(t);
        if (!(p > 0 && p < 1)) throw new ArgumentException($"p must be in (0, 1), got {p}.", nameof(p));
        int k = Math.Min(s.Count, t.Count);
        if (k == 0) throw new ArgumentException("lists must be non-empty.", nameof(s));
        var seenS = new HashSet<int>();
        var seenT = new HashSet<int>();
        double x = 0, sum = 0;
        for (int d = 1; d <= k; d++)
        {
            int a = s[d - 1], b = t[d - 1];
            if (a == b) x++;
            else
            {
                if (seenT.Contains(a)) x++;
                if (seenS.Contains(b)) x++;
            }
            seenS.Add(a);
            seenT.Add(b);
            sum += x / d * Math.Pow(p, d);   // (X_d / d) p^d
        }
        return x / k * Math.Pow(p, k) + (1 - p) / p * sum;
    }

    /// <summary>Inverted RBO: 1 − mean over topic pairs of RBO of their top-<paramref name="topN"/> lists (OCTIS InvertedRBO). One topic → NaN.</summary>
    public static double InvertedRbo(int[][] topTopicWords, double p = 0.9, int topN = 10)
    {
        ArgumentNullException.ThrowIfNull(topTopicWords);
        if (topN < 1) throw new ArgumentException($"topN must be ≥ 1, got {topN}.", nameof(topN));
        double sum = 0;
        int pairs = 0;
        for (int a = 0; a < topTopicWords.Length; a++)
            for (int b = a + 1; b < topTopicWords.Length; b++)
            {
                sum += Rbo(topTopicWords[a].Take(topN).ToArray(), topTopicWords[b].Take(topN).ToArray(), p);
                pairs++;
            }
        return pairs == 0 ? double.NaN : 1 - sum / pairs;
    }

    /// <summary>Topic diversity: unique words among the top-<paramref name="n"/> of every topic over n · K.</summary>
    public static double TopicDiversity(int[][] topTopicWords, int n = 25)
    {
        ArgumentNullException.ThrowIfNull(topTopicWords);
        if (topTopicWords.Length == 0) throw new ArgumentException("no topics.", nameof(topTopicWords));
        if (n < 1) throw new ArgumentException($"n must be ≥ 1, got {n}.", nameof(n));
        var top = topTopicWords.Select(t => t.Take(n).ToArray()).ToArray();
        return top.SelectMany(t => t).Distinct().Count() / (double)top.Sum(t => t.Length);
    }
}
