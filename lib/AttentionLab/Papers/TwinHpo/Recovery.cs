namespace AttentionLab.Papers.TwinHpo;

/// <summary>One recovered topic matched to a planted one.</summary>
public sealed record TopicMatch(int Recovered, int Planted, double JsDistance);

/// <summary>Recovered topics matched one-to-one to planted topics by the Hungarian method on Jensen–Shannon distance.</summary>
/// <param name="Matches">The matched pairs (min(K_recovered, K_planted) of them).</param>
/// <param name="MeanJs">Mean JS distance over the matches.</param>
public sealed record Recovery(IReadOnlyList<TopicMatch> Matches, double MeanJs)
{
    /// <summary>Hungarian assignment minimising Σ JS(φ̂_i, φ_σ(i)).</summary>
    public static Recovery Of(IReadOnlyList<double[]> recoveredPhi, IReadOnlyList<double[]> plantedPhi)
    {
        var cost = TopicMath.JsCost(recoveredPhi, plantedPhi);
        var assignment = Hungarian.Solve(cost);
        var matches = assignment.Select((j, i) => (i, j)).Where(p => p.j >= 0).Select(p => new TopicMatch(p.i, p.j, cost[p.i, p.j])).ToList();
        return new Recovery(matches, matches.Average(m => m.JsDistance));
    }

    /// <summary>A recovered per-topic prevalence carried onto the planted topics through the matches (unmatched planted topics get 0).</summary>
    public double[] PlantedShare(double[] recoveredPrevalence, int plantedTopics)
    {
        var share = new double[plantedTopics];
        foreach (var m in Matches) share[m.Planted] += recoveredPrevalence[m.Recovered];
        return share;
    }
}

/// <summary>A platform's topic prevalence: planted (mean θ of its documents) and recovered (mean θ̂ carried through the matching).</summary>
public sealed record PlatformReading(string Platform, double[] Planted, double[] Recovered)
{
    /// <summary>Share of the Guardian-lean topics (policy, technology).</summary>
    public (double Planted, double Recovered) LeanShare() =>
        (SyntheticCorpus.GuardianLeanTopics.Sum(k => Planted[k]), SyntheticCorpus.GuardianLeanTopics.Sum(k => Recovered[k]));
}

/// <summary>The in-run exactness checks (spec §6): naive twins and identities on this run's data.</summary>
public sealed record TwinHpoExactness(double GibbsTwinMismatches, bool CountInvariants, double NpmiTwinMaxAbs, double HvTwinRelErr,
    bool SortTwinEqual, double HungarianGap);

/// <summary>Runs <see cref="TwinHpoExactness"/>.</summary>
public static class TwinHpoChecks
{
    public static TwinHpoExactness Run(Corpus train, IReadOnlyList<TopicEval> ldaTrials, int seed)
    {
        // Gibbs fast vs naive on a small slice (same seed → same draws → same assignments).
        var tiny = new Corpus(train.Vocab, train.Docs.Take(6).Select(d => d.Take(9).ToArray()).ToArray());
        var eta = Enumerable.Range(0, 3).Select(_ => Enumerable.Repeat(0.05, tiny.V).ToArray()).ToArray();
        var fast = LdaGibbs.Fit(tiny, 3, 0.2, eta, 4, seed);
        var naive = LdaGibbsNaive.Fit(tiny, 3, 0.2, eta, 4, seed);
        double mismatches = fast.Z.Zip(naive.Z).Sum(p => p.First.Zip(p.Second).Count(q => q.First != q.Second));
        // Count invariants on a full fit: Σ n_kw = tokens, Σ_k n_dk = |d|, rows of θ and φ sum to 1.
        var model = LdaGibbs.Fit(train, 5, 0.1, 0.01, 5, seed);
        long sumNkw = 0;
        foreach (int c in model.Nkw) sumNkw += c;
        bool counts = sumNkw == train.Tokens && model.Nk.Sum() == train.Tokens
            && Enumerable.Range(0, train.Docs.Length).All(d => Enumerable.Range(0, 5).Sum(k => model.Ndk[d, k]) == train.Docs[d].Length)
            && model.Theta.All(r => Math.Abs(r.Sum() - 1) < 1e-12) && model.Phi.All(r => Math.Abs(r.Sum() - 1) < 1e-12);
        // NPMI fast (sliding counts) vs naive (explicit window sets) on the first 60 documents.
        var slice = new Corpus(train.Vocab, train.Docs.Take(60).ToArray());
        var top = model.TopWords(10);
        double npmiGap = TopicMetrics.NpmiPerTopic(top, slice).Zip(TopicMetricsNaive.NpmiPerTopic(top, slice))
            .Max(p => double.IsNaN(p.First) && double.IsNaN(p.Second) ? 0 : Math.Abs(p.First - p.Second));
        // Hypervolume (HSO) vs cell counting, non-dominated sort vs peeling, on this run's LDA trials.
        var pts = ldaTrials.Select(t => t.Objectives).ToList();
        bool[] max = [true, true, false];
        double[] reference = [-1, 0, train.V];
        double hv = Pareto.Hypervolume(pts, reference, max), hvNaive = ParetoNaive.Hypervolume(pts, reference, max);
        bool sortEqual = Pareto.NonDominatedSort(pts, max).Zip(ParetoNaive.NonDominatedSort(pts, max))
            .All(p => p.First.OrderBy(i => i).SequenceEqual(p.Second.OrderBy(i => i)));
        sortEqual &= Pareto.NonDominatedSort(pts, max).Length == ParetoNaive.NonDominatedSort(pts, max).Length;
        // Hungarian vs brute force over all 7! permutations of a 7 × 7 JS cost matrix.
        var cost = TopicMath.JsCost(model.Phi.Concat(model.Phi.Select(r => r.Reverse().ToArray())).Take(7).ToList(),
            model.Phi.Concat(model.Phi.Select(r => r.Select(x => Math.Sqrt(x)).ToArray())).Take(7).ToList());
        double hungarian = Hungarian.Cost(cost, Hungarian.Solve(cost));
        double brute = Permutations(7).Min(perm => perm.Select((j, i) => cost[i, j]).Sum());
        return new TwinHpoExactness(mismatches, counts, npmiGap, Math.Abs(hv - hvNaive) / Math.Max(hvNaive, 1e-300), sortEqual, hungarian - brute);
    }

    /// <summary>Every permutation of 0 … n − 1.</summary>
    public static IEnumerable<int[]> Permutations(int n)
    {
        if (n == 0) { yield return []; yield break; }
        foreach (var rest in Permutations(n - 1))
            for (int pos = 0; pos <= rest.Length; pos++)
            {
                var p = new int[n];
                for (int i = 0, j = 0; i < n; i++) p[i] = i == pos ? n - 1 : rest[j++];
                yield return p;
            }
    }
}
