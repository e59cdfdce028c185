using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Trainers.FastTree;

namespace AttentionLab.Papers.AttentionGuard;

/// <summary>
/// The paper's Random Forest, from ML.NET: <c>FastForest</c> (bagged trees, a random feature subset per split) is a
/// binary trainer, so the four states are learned one-versus-rest (<c>OneVersusAll</c>), each class's forest voting with
/// its score and the highest score winning (docs/decisions.md, P30).
/// </summary>
public sealed class ForestClassifier
{
    /// <summary>Forest settings: trees per class, leaves per tree, the fraction of features tried at each split (√F / F for a
    /// classic random forest), the fraction of examples each tree's bootstrap bag draws, and the seed.</summary>
    public sealed record Options(int Trees = 50, int Leaves = 20, double FeatureFractionPerSplit = double.NaN, double BagFraction = 0.7,
        int MinimumExamplesPerLeaf = 10, int Seed = 0);

    readonly ITransformer model;
    readonly MLContext context;
    readonly int features;

    ForestClassifier(MLContext context, ITransformer model, int features, int classes)
    {
        this.context = context;
        this.model = model;
        this.features = features;
        Classes = classes;
    }

    /// <summary>Number of classes the forest was trained for (labels 0 … Classes − 1).</summary>
    public int Classes { get; }

    /// <summary>Fits one-vs-rest forests on rows <paramref name="x"/> [N][F] with labels <paramref name="y"/> in 0 … classes − 1.</summary>
    public static ForestClassifier Fit(IReadOnlyList<double[]> x, IReadOnlyList<int> y, int classes, Options? options = null)
    {
        options ??= new Options();
        int f = CheckRows(x, nameof(x));
        ArgumentNullException.ThrowIfNull(y);
        if (y.Count != x.Count) throw new ArgumentException($"{x.Count} rows but {y.Count} labels.", nameof(y));
        if (classes < 2) throw new ArgumentException($"a classifier needs at least 2 classes, got {classes}.", nameof(classes));
        if (y.Any(label => label < 0 || label >= classes)) throw new ArgumentException($"labels must lie in 0 … {classes - 1}.", nameof(y));
        if (options.Trees <= 0 || options.Leaves < 2) throw new ArgumentException("a forest needs at least one tree of two leaves.", nameof(options));
        double fraction = double.IsNaN(options.FeatureFractionPerSplit) ? Math.Sqrt(f) / f : options.FeatureFractionPerSplit;   // √F of F per split
        var context = new MLContext(options.Seed);
        var data = Load(context, x, y, f, classes);
        var forest = context.BinaryClassification.Trainers.FastForest(new FastForestBinaryTrainer.Options
        {
            NumberOfTrees = options.Trees,
            NumberOfLeaves = options.Leaves,
            FeatureFractionPerSplit = fraction,
            FeatureFraction = 1.0,
            BaggingSize = 1,                                                                   // a new bag for every tree
            BaggingExampleFraction = options.BagFraction,
            MinimumExampleCountPerLeaf = options.MinimumExamplesPerLeaf,
            NumberOfThreads = 1,
            Seed = options.Seed,
            FeatureColumnName = "Features",
        });
        var model = context.MulticlassClassification.Trainers.OneVersusAll(forest, useProbabilities: false).Fit(data);
        return new ForestClassifier(context, model, f, classes);
    }

    /// <summary>Per-class scores [N][Classes] (each class's forest output; the prediction is the arg-max).</summary>
    public double[][] Scores(IReadOnlyList<double[]> x)
    {
        int f = CheckRows(x, nameof(x));
        if (f != features) throw new ArgumentException($"the forest was trained on {features} features, the rows have {f}.", nameof(x));
        var scored = model.Transform(Load(context, x, Enumerable.Repeat(0, x.Count).ToArray(), f, Classes));
        return scored.GetColumn<float[]>("Score").Select(row => row.Select(v => (double)v).ToArray()).ToArray();
    }

    /// <summary>The arg-max class per row.</summary>
    public int[] Predict(IReadOnlyList<double[]> x) => Scores(x).Select(ArgMax).ToArray();

    /// <summary>ML.NET's own prediction (its PredictedLabel column): an independent check of <see cref="Predict"/>'s arg-max.</summary>
    public int[] PredictedByMlNet(IReadOnlyList<double[]> x)
    {
        var scored = model.Transform(Load(context, x, Enumerable.Repeat(0, x.Count).ToArray(), features, Classes));
        return scored.GetColumn<uint>("PredictedLabel").Select(v => (int)v - 1).ToArray();
    }

    /// <summary>Index of the largest value (the first on ties).</summary>
    public static int ArgMax(double[] v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }

    static int CheckRows(IReadOnlyList<double[]> x, string name)
    {
        ArgumentNullException.ThrowIfNull(x, name);
        if (x.Count == 0) throw new ArgumentException("no rows.", name);
        int f = x[0]?.Length ?? 0;
        if (f == 0) throw new ArgumentException("rows have no features.", name);
        for (int i = 0; i < x.Count; i++)
        {
            if (x[i] is null || x[i].Length != f) throw new ArgumentException($"row {i} has {x[i]?.Length ?? 0} features, row 0 has {f}.", name);
            if (x[i].Any(v => !double.IsFinite(v))) throw new ArgumentException($"row {i} holds NaN or ±∞.", name);
        }
        return f;
    }

    sealed class Row
    {
        public float[] Features = [];
        public uint Label;
    }

    static IDataView Load(MLContext context, IReadOnlyList<double[]> x, IReadOnlyList<int> y, int f, int classes)
    {
        var schema = SchemaDefinition.Create(typeof(Row));
        schema[nameof(Row.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, f);
        schema[nameof(Row.Label)].ColumnType = new KeyDataViewType(typeof(uint), classes);
        // Labels 0-based here: LoadFromEnumerable stores key y + 1 (1-based keys would drop the last class).
        var rows = x.Select((r, i) => new Row { Features = r.Select(v => (float)v).ToArray(), Label = (uint)y[i] }).ToList();
        return context.Data.LoadFromEnumerable(rows, schema);
    }
}

/// <summary>K-fold splits that keep each group (learner) whole: no learner is in both the training and the test fold.</summary>
public static class GroupKFold
{
    /// <summary>Test-fold index per row: groups are shuffled with <paramref name="seed"/> and dealt to folds in turn.</summary>
    public static int[] Assign(IReadOnlyList<int> groups, int folds, int seed)
    {
        ArgumentNullException.ThrowIfNull(groups);
        if (groups.Count == 0) throw new ArgumentException("no rows to split.", nameof(groups));
        var distinct = groups.Distinct().ToArray();
        if (folds < 2) throw new ArgumentException($"cross-validation needs at least 2 folds, got {folds}.", nameof(folds));
        if (folds > distinct.Length) throw new ArgumentException($"{folds} folds but only {distinct.Length} groups.", nameof(folds));
        new Random(seed).Shuffle(distinct);
        var fold = new Dictionary<int, int>();
        for (int i = 0; i < distinct.Length; i++) fold[distinct[i]] = i % folds;
        return groups.Select(g => fold[g]).ToArray();
    }

    /// <summary>The leaky alternative: rows dealt to folds at random, ignoring the group.</summary>
    public static int[] AssignRandom(int rows, int folds, int seed)
    {
        if (rows <= 0) throw new ArgumentException($"rows must be positive, got {rows}.", nameof(rows));
        if (folds < 2 || folds > rows) throw new ArgumentException($"folds must lie in 2 … {rows}, got {folds}.", nameof(folds));
        var order = Enumerable.Range(0, rows).ToArray();
        new Random(seed).Shuffle(order);
        var fold = new int[rows];
        for (int i = 0; i < rows; i++) fold[order[i]] = i % folds;
        return fold;
    }
}
