using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RoutingTransformer;

/// <summary>
/// The instant k-means demo: <see cref="OnlineKMeans"/> (one head, D = 2) fed batches from a 4-component Gaussian
/// mixture at (±2, ±2), σ = 0.5; records the centroid trajectories and the centroid error after each EMA update.
/// </summary>
public static class KMeansDemo
{
    /// <summary>Sizes of the demo.</summary>
    /// <param name="Updates">EMA updates.</param>
    /// <param name="Decay">λ (0.9 here: the paper's 0.999 needs thousands of updates).</param>
    /// <param name="BatchSize">points per update.</param>
    /// <param name="Seed">seed of the data and of the start.</param>
    public sealed record Config(int Updates = 200, double Decay = 0.9, int BatchSize = 256, int Seed = 0);

    /// <summary>Trajectories [update][cluster] = (x, y), the true means and the error per update.</summary>
    /// <param name="Trajectory">centroids after each update (index 0 = the start).</param>
    /// <param name="TrueMeans">the mixture's component means.</param>
    /// <param name="Errors">mean distance from each true mean to its matched centroid (best permutation), per update.</param>
    /// <param name="Points">a sample of the data for the scatter plot.</param>
    public sealed record Result((double X, double Y)[][] Trajectory, (double X, double Y)[] TrueMeans, double[] Errors, (double X, double Y)[] Points)
    {
        /// <summary>Error after the last update.</summary>
        public double FinalError => Errors[^1];
    }

    static readonly (double X, double Y)[] Centres = { (2, 2), (-2, 2), (-2, -2), (2, -2) };

    /// <summary>Runs the demo on the CPU (float32).</summary>
    public static Result Run(Config config)
    {
        ArgumentNullException.ThrowIfNull(config);
        Guard.Positive(config.Updates, nameof(config.Updates));
        using var scope = NewDisposeScope();
        var rng = new Random(config.Seed);
        double Normal() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());   // Box–Muller
        Tensor Batch()
        {
            var xy = new float[config.BatchSize * 2];
            for (int i = 0; i < config.BatchSize; i++)
            {
                var c = Centres[rng.Next(4)];
                xy[2 * i] = (float)(c.X + 0.5 * Normal());
                xy[2 * i + 1] = (float)(c.Y + 0.5 * Normal());
            }
            return torch.tensor(xy, new long[] { 1, config.BatchSize, 1, 2 });
        }
        using var km = new OnlineKMeans(1, 4, 2, config.Decay);
        km.SetMeans(torch.tensor(Enumerable.Range(0, 8).Select(_ => (float)(0.5 * Normal())).ToArray(), new long[] { 1, 4, 2 }));   // a start near the origin
        var trajectory = new List<(double, double)[]> { Read(km.Means) };
        var errors = new List<double> { Error(km.Means) };
        var points = Read(Batch().reshape(1, -1, 2));
        for (int u = 0; u < config.Updates; u++)
        {
            using var step = NewDisposeScope();
            var x = Batch();
            var (_, idx) = km.Assign(x);
            km.Update(x, idx);
            trajectory.Add(Read(km.Means));
            errors.Add(Error(km.Means));
        }
        return new Result(trajectory.ToArray(), Centres, errors.ToArray(), points);
    }

    static (double X, double Y)[] Read(Tensor mu)
    {
        var a = mu.reshape(-1, 2).to(ScalarType.Float64).data<double>().ToArray();
        return Enumerable.Range(0, a.Length / 2).Select(i => (a[2 * i], a[2 * i + 1])).ToArray();
    }

    /// <summary>min over the 24 matchings of the mean distance true mean ↔ centroid.</summary>
    static double Error(Tensor mu)
    {
        var m = Read(mu);
        double best = double.PositiveInfinity;
        foreach (var perm in Permutations(new[] { 0, 1, 2, 3 }))
            best = Math.Min(best,
                Enumerable.Range(0, 4).Average(i => Math.Sqrt(Math.Pow(m[perm[i]].X - Centres[i].X, 2) + Math.Pow(m[perm[i]].Y - Centres[i].Y, 2))));
        return best;
    }

    static IEnumerable<int[]> Permutations(int[] items) => items.Length <= 1
        ? new[] { items }
        : items.SelectMany(x => Permutations(items.Where(y => y != x).ToArray()).Select(rest => new[] { x }.Concat(rest).ToArray()));
}
