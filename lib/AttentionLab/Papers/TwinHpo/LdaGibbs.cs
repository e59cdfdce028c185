namespace AttentionLab.Papers.TwinHpo;

/// <summary>A fitted LDA: its hyperparameters, the final assignments and counts, φ (topic–word) and θ (document–topic).</summary>
public sealed class LdaModel
{
    internal LdaModel(int k, double alpha, double[][] eta, int[][] z, int[,] ndk, int[,] nkw, int[] nk)
    {
        K = k; Alpha = alpha; Eta = eta; Z = z; Ndk = ndk; Nkw = nkw; Nk = nk;
        int v = nkw.GetLength(1);
        Phi = new double[k][];
        for (int t = 0; t < k; t++)
        {
            double etaSum = eta[t].Sum();
            Phi[t] = Enumerable.Range(0, v).Select(w => (nkw[t, w] + eta[t][w]) / (nk[t] + etaSum)).ToArray();   // φ_kw
        }
        Theta = Enumerable.Range(0, z.Length).Select(d =>
            Enumerable.Range(0, k).Select(t => (ndk[d, t] + alpha) / (z[d].Length + k * alpha)).ToArray()).ToArray();   // θ_dk
    }

    public int K { get; }
    public double Alpha { get; }
    /// <summary>η_kw (symmetric LDA: every entry η; anchored: η + strength on a topic's anchor words).</summary>
    public double[][] Eta { get; }
    /// <summary>Topic of every token [D][n_d].</summary>
    public int[][] Z { get; }
    public int[,] Ndk { get; }
    public int[,] Nkw { get; }
    public int[] Nk { get; }
    /// <summary>φ_kw = (n_kw + η_kw) / (n_k + Σ_w η_kw) [K][V].</summary>
    public double[][] Phi { get; }
    /// <summary>θ_dk = (n_dk + α) / (n_d + Kα) [D][K].</summary>
    public double[][] Theta { get; }

    /// <summary>Top-<paramref name="n"/> word ids per topic.</summary>
    public int[][] TopWords(int n = 10) => TopicMath.TopWords(Phi, n);

    /// <summary>
    /// Held-out perplexity by document completion (Wallach et al. 2009): θ of each test document is folded in by
    /// <paramref name="sweeps"/> Gibbs sweeps over its even-position tokens with φ fixed, p(z = k) ∝ (n_dk¬ + α) φ_kw; then
    /// perplexity = exp(−Σ log Σ_k θ_dk φ_kw / N) over its odd-position tokens.
    /// </summary>
    public double HeldOutPerplexity(Corpus test, int sweeps = 20, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(test);
        if (test.V != Phi[0].Length) throw new ArgumentException($"test vocabulary {test.V} ≠ model vocabulary {Phi[0].Length}.", nameof(test));
        if (sweeps < 1) throw new ArgumentException($"sweeps must be ≥ 1, got {sweeps}.", nameof(sweeps));
        test.Validated();
        var rng = new Random(seed);
        var p = new double[K];
        double logLik = 0;
        long n = 0;
        foreach (var doc in test.Docs)
        {
            var observed = doc.Where((_, i) => i % 2 == 0).ToArray();
            var heldOut = doc.Where((_, i) => i % 2 == 1).ToArray();
            if (heldOut.Length == 0) continue;
            var z = observed.Select(_ => rng.Next(K)).ToArray();
            var ndk = new int[K];
            foreach (int t in z) ndk[t]++;
            for (int s = 0; s < sweeps; s++)
                for (int i = 0; i < observed.Length; i++)
                {
                    ndk[z[i]]--;
                    double total = 0;
                    for (int t = 0; t < K; t++) total += p[t] = (ndk[t] + Alpha) * Phi[t][observed[i]];
                    z[i] = LdaGibbs.Draw(p, total, rng);
                    ndk[z[i]]++;
                }
            for (int i = 0; i < heldOut.Length; i++)
            {
                double pw = 0;
                for (int t = 0; t < K; t++) pw += (ndk[t] + Alpha) / (observed.Length + K * Alpha) * Phi[t][heldOut[i]];
                logLik += Math.Log(pw);
                n++;
            }
        }
        if (n == 0) throw new ArgumentException("the test corpus has no held-out tokens (documents need ≥ 2 tokens).", nameof(test));
        return Math.Exp(-logLik / n);
    }
}

/// <summary>
/// LDA by collapsed Gibbs sampling (Griffiths &amp; Steyvers 2004): for each token in turn,
/// p(z = k | rest) ∝ (n_dk¬ + α)(n_kw¬ + η_kw) / (n_k¬ + Σ_w η_kw), with the counts n kept incrementally.
/// </summary>
public static class LdaGibbs
{
    /// <summary>Symmetric LDA: K topics, α, η, <paramref name="iters"/> sweeps from a uniform random start (seeded).</summary>
    public static LdaModel Fit(Corpus corpus, int k, double alpha, double eta, int iters, int seed) =>
        Fit(corpus, k, alpha, SymmetricEta(k, corpus?.V ?? 0, eta), iters, seed);

    /// <summary>
    /// Anchored LDA: η_kw = η + <paramref name="anchorStrength"/> for the anchor words of topic k (the first anchors.Length topics), η
    /// elsewhere — a Dirichlet prior that pulls each anchor set into its own topic.
    /// </summary>
    public static LdaModel FitAnchored(Corpus corpus, int k, double alpha, double eta, int[][] anchors, double anchorStrength, int iters, int seed)
    {
        ArgumentNullException.ThrowIfNull(anchors);
        if (anchors.Length > k) throw new ArgumentException($"{anchors.Length} anchor sets for {k} topics.", nameof(anchors));
        if (!(anchorStrength >= 0)) throw new ArgumentException($"anchorStrength must be ≥ 0, got {anchorStrength}.", nameof(anchorStrength));
        var etaMatrix = SymmetricEta(k, corpus?.V ?? 0, eta);
        for (int t = 0; t < anchors.Length; t++)
            foreach (int w in anchors[t])
            {
                if ((uint)w >= (uint)etaMatrix[t].Length) throw new ArgumentException($"anchor word id {w} outside the vocabulary.", nameof(anchors));
                etaMatrix[t][w] += anchorStrength;
            }
        return Fit(corpus!, k, alpha, etaMatrix, iters, seed);
    }

    static double[][] SymmetricEta(int k, int v, double eta)
    {
        if (!(eta > 0)) throw new ArgumentException($"eta must be > 0, got {eta}.", nameof(eta));
        if (k < 1) throw new ArgumentException($"k must be ≥ 1, got {k}.", nameof(k));
        return Enumerable.Range(0, k).Select(_ => Enumerable.Repeat(eta, v).ToArray()).ToArray();
    }

    internal static void CheckArgs(Corpus corpus, int k, double alpha, double[][] eta, int iters)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        ArgumentNullException.ThrowIfNull(eta);
        if (k < 1) throw new ArgumentException($"k must be ≥ 1, got {k}.", nameof(k));
        if (!(alpha > 0)) throw new ArgumentException($"alpha must be > 0, got {alpha}.", nameof(alpha));
        if (iters < 0) throw new ArgumentException($"iters must be ≥ 0, got {iters}.", nameof(iters));
        if (eta.Length != k || eta.Any(r => r.Length != corpus.V || r.Any(x => !(x > 0))))
            throw new ArgumentException($"eta must be [{k}][{corpus.V}] with entries > 0.", nameof(eta));
        if (corpus.V == 0) throw new ArgumentException("the corpus has an empty vocabulary.", nameof(corpus));
        corpus.Validated();
    }

    /// <summary>General form with a per-topic η row.</summary>
    public static LdaModel Fit(Corpus corpus, int k, double alpha, double[][] eta, int iters, int seed)
    {
        CheckArgs(corpus, k, alpha, eta, iters);
        int d = corpus.Docs.Length, v = corpus.V;
        var rng = new Random(seed);
        var z = corpus.Docs.Select(doc => doc.Select(_ => rng.Next(k)).ToArray()).ToArray();
        var ndk = new int[d, k];
        var nkw = new int[k, v];
        var nk = new int[k];
        for (int di = 0; di < d; di++)
            for (int i = 0; i < z[di].Length; i++) { ndk[di, z[di][i]]++; nkw[z[di][i], corpus.Docs[di][i]]++; nk[z[di][i]]++; }
        var etaSum = eta.Select(r => r.Sum()).ToArray();
        var p = new double[k];
        for (int it = 0; it < iters; it++)
            for (int di = 0; di < d; di++)
            {
                var doc = corpus.Docs[di];
                var zd = z[di];
                for (int i = 0; i < doc.Length; i++)
                {
                    int w = doc[i], old = zd[i];
                    ndk[di, old]--; nkw[old, w]--; nk[old]--;                                    // the ¬ counts
                    double total = 0;
                    for (int t = 0; t < k; t++)
                        total += p[t] = (ndk[di, t] + alpha) * (nkw[t, w] + eta[t][w]) / (nk[t] + etaSum[t]);   // p(z = t | rest)
                    int nz = Draw(p, total, rng);
                    zd[i] = nz;
                    ndk[di, nz]++; nkw[nz, w]++; nk[nz]++;
                }
            }
        return new LdaModel(k, alpha, eta, z, ndk, nkw, nk);
    }

    /// <summary>Inverse-CDF draw from unnormalised weights p (Σ = total) with one uniform.</summary>
    internal static int Draw(double[] p, double total, Random rng)
    {
        double u = rng.NextDouble() * total;
        for (int t = 0; t < p.Length; t++)
        {
            u -= p[t];
            if (u < 0) return t;
        }
        for (int t = p.Length - 1; t >= 0; t--) if (p[t] > 0) return t;   // round-off at the top end
        return p.Length - 1;
    }
}
