using Microsoft.ML;
using Microsoft.ML.Data;

namespace AttentionLab.Papers.TwinHpo;

/// <summary>
/// LDA from a maintained library: ML.NET's LatentDirichletAllocation (LightLDA, Metropolis–Hastings sampling; native libLdaNative),
/// used as an independent check that the planted topics are recoverable by someone else's sampler.
/// </summary>
public static class LdaMlNet
{
    sealed class Row
    {
        public float[] Counts { get; set; } = [];
    }

    /// <summary>A fitted ML.NET LDA: topic–word weights φ [K][V] (normalised item scores) and document–topic mixtures θ [D][K].</summary>
    public sealed record Fitted(double[][] Phi, double[][] Theta);

    /// <summary>
    /// Fits K topics with symmetric α (ML.NET's alphaSum = K·α) and β = η, <paramref name="iters"/> iterations, one thread.
    /// </summary>
    public static Fitted Fit(Corpus corpus, int k, double alpha, double eta, int iters, int seed)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        if (k < 2) throw new ArgumentException($"k must be ≥ 2 for ML.NET's LDA, got {k}.", nameof(k));
        if (!(alpha > 0)) throw new ArgumentException($"alpha must be > 0, got {alpha}.", nameof(alpha));
        if (!(eta > 0)) throw new ArgumentException($"eta must be > 0, got {eta}.", nameof(eta));
        if (iters < 1) throw new ArgumentException($"iters must be ≥ 1, got {iters}.", nameof(iters));
        corpus.Validated();
        int v = corpus.V;
        var rows = corpus.Docs.Select(doc =>
        {
            var c = new float[v];
            foreach (int w in doc) c[w]++;
            return new Row { Counts = c };
        }).ToList();
        var ml = new MLContext(seed);
        var schema = SchemaDefinition.Create(typeof(Row));
        schema[nameof(Row.Counts)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, v);
        var data = ml.Data.LoadFromEnumerable(rows, schema);
        var estimator = ml.Transforms.Text.LatentDirichletAllocation("Topics", nameof(Row.Counts), numberOfTopics: k,
            alphaSum: (float)(alpha * k), beta: (float)eta, maximumNumberOfIterations: iters, numberOfThreads: 1,
            numberOfSummaryTermsPerTopic: v, resetRandomGenerator: true, maximumTokenCountPerDocument: 4096);
        var transformer = estimator.Fit(data);
        var details = transformer.GetLdaDetails(0);
        var phi = Enumerable.Range(0, k).Select(_ => new double[v]).ToArray();
        for (int t = 0; t < k && t < details.ItemScoresPerTopic.Count; t++)
            foreach (var item in details.ItemScoresPerTopic[t]) phi[t][item.Item] = Math.Max(0, item.Score);
        for (int t = 0; t < k; t++)
        {
            double s = phi[t].Sum();
            for (int w = 0; w < v; w++) phi[t][w] = s > 0 ? phi[t][w] / s : 1.0 / v;
        }
        var topics = transformer.Transform(data).GetColumn<float[]>("Topics").ToArray();
        var theta = topics.Select(t =>
        {
            double s = t.Sum(x => (double)x);
            return t.Select(x => s > 0 ? x / s : 1.0 / k).ToArray();
        }).ToArray();
        return new Fitted(phi, theta);
    }
}
