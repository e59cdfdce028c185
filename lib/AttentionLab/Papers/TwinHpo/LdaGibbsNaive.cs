namespace AttentionLab.Papers.TwinHpo;

/// <summary>
/// The naive twin of <see cref="LdaGibbs"/>: the same draws, but every conditional recounts n_dk¬, n_kw¬, n_k¬ from the assignments
/// (O(N) per token) — the definition, never fast. With the same seed it must produce the same assignments.
/// </summary>
public static class LdaGibbsNaive
{
    public static LdaModel Fit(Corpus corpus, int k, double alpha, double[][] eta, int iters, int seed)
    {
        LdaGibbs.CheckArgs(corpus, k, alpha, eta, iters);
        int d = corpus.Docs.Length, v = corpus.V;
        var rng = new Random(seed);
        var z = corpus.Docs.Select(doc => doc.Select(_ => rng.Next(k)).ToArray()).ToArray();
        var etaSum = eta.Select(r => r.Sum()).ToArray();
        var p = new double[k];
        for (int it = 0; it < iters; it++)
            for (int di = 0; di < d; di++)
                for (int i = 0; i < corpus.Docs[di].Length; i++)
                {
                    int w = corpus.Docs[di][i];
                    double total = 0;
                    for (int t = 0; t < k; t++)
                    {
                        int ndk = 0, nkw = 0, nk = 0;
                        for (int dj = 0; dj < d; dj++)
                            for (int j = 0; j < z[dj].Length; j++)
                            {
                                if ((dj == di && j == i) || z[dj][j] != t) continue;   // every token but this one
                                nk++;
                                if (dj == di) ndk++;
                                if (corpus.Docs[dj][j] == w) nkw++;
                            }
                        total += p[t] = (ndk + alpha) * (nkw + eta[t][w]) / (nk + etaSum[t]);
                    }
                    z[di][i] = LdaGibbs.Draw(p, total, rng);
                }
        var ndkAll = new int[d, k];
        var nkwAll = new int[k, v];
        var nkAll = new int[k];
        for (int di = 0; di < d; di++)
            for (int i = 0; i < z[di].Length; i++) { ndkAll[di, z[di][i]]++; nkwAll[z[di][i], corpus.Docs[di][i]]++; nkAll[z[di][i]]++; }
        return new LdaModel(k, alpha, eta, z, ndkAll, nkwAll, nkAll);
    }
}
