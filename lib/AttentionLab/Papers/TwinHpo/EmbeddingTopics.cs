using AttentionLab.Models;
using MathNet.Numerics.LinearAlgebra;
using static TorchSharp.torch;

namespace AttentionLab.Papers.TwinHpo;

/// <summary>A fitted embedding topic model: cluster of each document, c-TF-IDF weights per cluster [C][V], and the doc–topic proxy.</summary>
public sealed record EmbeddingTopicModel(int Clusters, int Components, int[] Labels, double[][] CTfIdf)
{
    /// <summary>Top-<paramref name="n"/> words by c-TF-IDF per cluster (empty clusters give their zero row's first words).</summary>
    public int[][] TopWords(int n = 10) => TopicMath.TopWords(CTfIdf, n);

    /// <summary>Share of documents in each cluster.</summary>
    public double[] Prevalence(IEnumerable<int> docs)
    {
        var idx = docs.ToArray();
        var share = new double[Clusters];
        foreach (int d in idx) share[Labels[d]] += 1.0 / idx.Length;
        return share;
    }

    /// <summary>
    /// The paper's "perplexity" objective — a doc–topic MASS PROXY, not a likelihood (spec §2a): p_dk = Σ_{w ∈ d, w ∈ top10(k)} c-TF-IDF_kw,
    /// normalised per document when non-zero (BERTopic's approximate_distribution), proxy = exp(−mean_d log max(Σ_k p_dk, 1e-10)).
    /// </summary>
    public double MassProxy(Corpus corpus, int topN = 10)
    {
        var top = TopWords(topN).Select(t => t.ToHashSet()).ToArray();
        double sumLog = 0;
        foreach (var doc in corpus.Docs)
        {
            double mass = 0;
            for (int k = 0; k < Clusters; k++) foreach (int w in doc) if (top[k].Contains(w)) mass += CTfIdf[k][w];
            double total = mass > 0 ? 1.0 : 0.0;   // Σ_k p_dk after the per-document normalisation
            sumLog += Math.Log(Math.Max(total, 1e-10));
        }
        return Math.Exp(-sumLog / corpus.Docs.Length);
    }
}

/// <summary>
/// "BERTopic-lite" (spec §2): sentence embeddings (MiniLM) → PCA to n_components (in place of UMAP) → KMeans(n_clusters) →
/// class-based TF-IDF per cluster, W_{t,c} = tf_{t,c} · log(1 + A / f_t), A = mean words per cluster, f_t = frequency of t over all.
/// </summary>
public static class EmbeddingTopics
{
    /// <summary>MiniLM sentence embeddings [D][384] of the documents' first <paramref name="maxWords"/> words, in batches.</summary>
    public static double[][] Embed(MiniLm model, Corpus corpus, int maxWords = 48, int batch = 32)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(corpus);
        if (maxWords < 1) throw new ArgumentException($"maxWords must be ≥ 1, got {maxWords}.", nameof(maxWords));
        var texts = corpus.Docs.Select(d => string.Join(' ', d.Take(maxWords).Select(w => corpus.Vocab[w]))).ToArray();
        var order = Enumerable.Range(0, texts.Length).OrderBy(i => texts[i].Length).ToArray();   // similar lengths share a batch
        var result = new double[texts.Length][];
        using var noGrad = no_grad();
        for (int s = 0; s < order.Length; s += batch)
        {
            using var scope = NewDisposeScope();
            var idx = order.Skip(s).Take(batch).ToArray();
            var emb = model.EmbedSentences(idx.Select(i => texts[i])).to(ScalarType.Float64, CPU);
            var data = emb.data<double>().ToArray();
            int dim = (int)emb.shape[1];
            for (int j = 0; j < idx.Length; j++) result[idx[j]] = data.AsSpan(j * dim, dim).ToArray();
        }
        return result;
    }

    /// <summary>Principal components: centred X → its first <paramref name="components"/> right-singular directions (MathNet SVD).</summary>
    public static double[][] Pca(double[][] x, int components)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Length == 0) throw new ArgumentException("no rows.", nameof(x));
        if (components < 1 || components > x[0].Length)
            throw new ArgumentException($"components must be in [1, {x[0].Length}], got {components}.", nameof(components));
        var m = Matrix<double>.Build.DenseOfRowArrays(x);
        var mean = m.ColumnSums() / m.RowCount;
        var centred = m - Matrix<double>.Build.Dense(m.RowCount, m.ColumnCount, (_, j) => mean[j]);
        var svd = centred.Svd(computeVectors: true);
        var proj = centred * svd.VT.SubMatrix(0, components, 0, m.ColumnCount).Transpose();
        return proj.ToRowArrays();
    }

    /// <summary>
    /// Lloyd's k-means with k-means++ seeding (one start, as scikit-learn's default n_init for k-means++), at most <paramref name="iters"/>
    /// rounds; an emptied cluster is re-seeded at the point farthest from its centre.
    /// </summary>
    public static int[] KMeans(double[][] x, int k, int seed, int iters = 100)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (k < 1 || k > x.Length) throw new ArgumentException($"k must be in [1, {x.Length}], got {k}.", nameof(k));
        if (x.Any(r => r.Any(double.IsNaN))) throw new ArgumentException("x contains NaN.", nameof(x));
        var rng = new Random(seed);
        int n = x.Length, dim = x[0].Length;
        static double D2(double[] a, double[] b) { double s = 0; for (int i = 0; i < a.Length; i++) s += (a[i] - b[i]) * (a[i] - b[i]); return s; }
        var centres = new List<double[]> { (double[])x[rng.Next(n)].Clone() };
        var near = x.Select(p => D2(p, centres[0])).ToArray();
        while (centres.Count < k)
        {
            double total = near.Sum(), u = rng.NextDouble() * total;
            int pick = n - 1;
            for (int i = 0; i < n; i++) { u -= near[i]; if (u < 0) { pick = i; break; } }   // P(i) ∝ D(i)²
            centres.Add((double[])x[pick].Clone());
            for (int i = 0; i < n; i++) near[i] = Math.Min(near[i], D2(x[i], centres[^1]));
        }
        var labels = new int[n];
        for (int it = 0; it < iters; it++)
        {
            bool changed = it == 0;
            for (int i = 0; i < n; i++)
            {
                int best = 0;
                double bd = double.PositiveInfinity;
                for (int c = 0; c < k; c++) { double d = D2(x[i], centres[c]); if (d < bd) { bd = d; best = c; } }
                if (labels[i] != best) { labels[i] = best; changed = true; }
            }
            if (!changed) break;
            for (int c = 0; c < k; c++)
            {
                var members = Enumerable.Range(0, n).Where(i => labels[i] == c).ToArray();
                if (members.Length == 0)
                {
                    int far = Enumerable.Range(0, n).OrderByDescending(i => D2(x[i], centres[labels[i]])).First();
                    centres[c] = (double[])x[far].Clone();
                    labels[far] = c;
                    continue;
                }
                centres[c] = Enumerable.Range(0, dim).Select(j => members.Average(i => x[i][j])).ToArray();
            }
        }
        return labels;
    }

    /// <summary>c-TF-IDF of clusters: W_{t,c} = tf_{t,c} · log(1 + A / f_t) (BERTopic), A = mean tokens per cluster, f_t = Σ_c tf_{t,c}.</summary>
    public static double[][] CTfIdf(Corpus corpus, int[] labels, int clusters)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        ArgumentNullException.ThrowIfNull(labels);
        if (labels.Length != corpus.Docs.Length) throw new ArgumentException($"{labels.Length} labels for {corpus.Docs.Length} documents.", nameof(labels));
        var tf = Enumerable.Range(0, clusters).Select(_ => new double[corpus.V]).ToArray();
        for (int d = 0; d < labels.Length; d++) foreach (int w in corpus.Docs[d]) tf[labels[d]][w]++;
        double a = tf.Sum(r => r.Sum()) / clusters;
        var f = Enumerable.Range(0, corpus.V).Select(t => tf.Sum(r => r[t])).ToArray();
        return tf.Select(r => r.Select((x, t) => f[t] > 0 ? x * Math.Log(1 + a / f[t]) : 0).ToArray()).ToArray();
    }

    /// <summary>
    /// Embeddings → PCA(components) → KMeans(clusters) → c-TF-IDF. <paramref name="projected"/>: the embeddings already projected on their
    /// leading principal directions (<see cref="Pca"/> once, with the most components any fit uses); the first
    /// <paramref name="components"/> columns are taken (PCA components are nested, so this equals a fresh PCA at that size).
    /// </summary>
    public static EmbeddingTopicModel Fit(double[][] projected, Corpus corpus, int clusters, int components, int seed)
    {
        ArgumentNullException.ThrowIfNull(projected);
        ArgumentNullException.ThrowIfNull(corpus);
        if (projected.Length != corpus.Docs.Length)
            throw new ArgumentException($"{projected.Length} embeddings for {corpus.Docs.Length} documents.", nameof(projected));
        if (components < 1 || components > projected[0].Length)
            throw new ArgumentException($"components must be in [1, {projected[0].Length}], got {components}.", nameof(components));
        var reduced = projected.Select(r => r.Take(components).ToArray()).ToArray();
        var labels = KMeans(reduced, clusters, seed);
        return new EmbeddingTopicModel(clusters, components, labels, CTfIdf(corpus, labels, clusters));
    }
}
