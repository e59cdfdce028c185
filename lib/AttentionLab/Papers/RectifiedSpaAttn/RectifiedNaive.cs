using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RectifiedSpaAttn;

/// <summary>What the naive twin computed, as plain arrays [Bt, H, I(, J)].</summary>
public sealed record NaiveRectified(Tensor Output, double[,,] R, double[,,] CompensationWeight, bool[,,,] Selected, bool[,,,] Beneficial,
    double[,,,] EstimatedMass, double Density) : IDisposable
{
    public void Dispose() => Output.Dispose();
}

/// <summary>
/// The slow, obviously-correct twin of <see cref="RectifiedSparseAttention.Forward"/>: float64 loops over batch, head,
/// query block, key block and token, written from the equations (no tensor ops). Same arguments, same decisions.
/// </summary>
public static class RectifiedNaive
{
    /// <summary>q, k [Bt, T, H, D], v [Bt, T, H, Dv] → output [Bt, T, H, Dv] (float64) and the decisions as arrays.</summary>
    public static NaiveRectified Forward(Tensor q, Tensor k, Tensor v, int block = 128, double tau = 0.5, int minTopK = 1, bool ipar = true,
        bool gapr = true, int isolatedTail = 0, bool[,]? neighbours = null, bool compensate = true)
    {
        Checks.Inputs(q, k, v, block, tau, minTopK, isolatedTail, neighbours);
        int bt = (int)q.shape[0], T = (int)q.shape[1], H = (int)q.shape[2], D = (int)q.shape[3], Dv = (int)v.shape[3];
        double[] Read(Tensor x) { using var s = NewDisposeScope(); return x.to(ScalarType.Float64, CPU).contiguous().data<double>().ToArray(); }
        var Q = Read(q); var K = Read(k); var V = Read(v);
        double Qa(int b, int t, int h, int i) => Q[((b * T + t) * H + h) * D + i];
        double Ka(int b, int t, int h, int i) => K[((b * T + t) * H + h) * D + i];
        double Va(int b, int t, int h, int i) => V[((b * T + t) * H + h) * Dv + i];
        int tail = isolatedTail, tv = T - tail, nb = (tv + block - 1) / block, nc = nb + (tail > 0 ? 1 : 0);
        double scale = 1.0 / Math.Sqrt(D);
        int Start(int j) => j * block;
        int Count(int j) => Math.Min(block, tv - j * block);

        var output = new double[bt * T * H * Dv];
        var R = new double[bt, H, nb]; var CW = new double[bt, H, nb];
        var sel = new bool[bt, H, nb, nb]; var ben = new bool[bt, H, nb, nb]; var mass = new double[bt, H, nb, nc];
        double pairs = 0;

        for (int b = 0; b < bt; b++)
            for (int h = 0; h < H; h++)
            {
                // block means q̄, k̄, v̄ and mean absolute deviations mean|q − q̄|, mean|k − k̄|
                var qbar = new double[nb, D]; var kbar = new double[nb, D]; var vbar = new double[nb, Dv];
                var dq = new double[nb, D]; var dk = new double[nb, D];
                for (int j = 0; j < nb; j++)
                {
                    for (int t = Start(j); t < Start(j) + Count(j); t++)
                    {
                        for (int i = 0; i < D; i++) { qbar[j, i] += Qa(b, t, h, i) / Count(j); kbar[j, i] += Ka(b, t, h, i) / Count(j); }
                        for (int i = 0; i < Dv; i++) vbar[j, i] += Va(b, t, h, i) / Count(j);
                    }
                    for (int t = Start(j); t < Start(j) + Count(j); t++)
                        for (int i = 0; i < D; i++)
                        {
                            dq[j, i] += Math.Abs(Qa(b, t, h, i) - qbar[j, i]) / Count(j);
                            dk[j, i] += Math.Abs(Ka(b, t, h, i) - kbar[j, i]) / Count(j);
                        }
                }
                for (int I = 0; I < nb; I++)
                {
                    // pooled probabilities p over [visual blocks ; text tokens], then IPAR
                    var logit = new double[nb + tail];
                    for (int J = 0; J < nb; J++) { double s = 0; for (int i = 0; i < D; i++) s += qbar[I, i] * kbar[J, i]; logit[J] = s * scale; }
                    for (int t = 0; t < tail; t++)
                    {
                        double s = 0;
                        for (int i = 0; i < D; i++) s += qbar[I, i] * Ka(b, tv + t, h, i);
                        logit[nb + t] = s * scale;
                    }
                    double mx = logit.Max();
                    var p = logit.Select(x => Math.Exp(x - mx)).ToArray();
                    double z = p.Sum();
                    for (int x = 0; x < p.Length; x++) p[x] /= z;
                    double denom = 0, textP = 0;
                    for (int J = 0; J < nb; J++) denom += Count(J) * p[J];
                    for (int t = 0; t < tail; t++) textP += p[nb + t];
                    denom += textP;
                    for (int J = 0; J < nb; J++) mass[b, h, I, J] = p[J] * Count(J) / denom;       // P_IJ = p_IJ n_J / (Σ n p + Σ p_t)
                    if (tail > 0) mass[b, h, I, nb] = textP / denom;

                    // critical set: smallest prefix with Σ ≤ τ, plus one, at least minTopK; neighbours; text always
                    if (tau >= 1) for (int J = 0; J < nb; J++) sel[b, h, I, J] = true;
                    else
                    {
                        var ranked = Enumerable.Range(0, nc).OrderByDescending(c => mass[b, h, I, c]).ToArray();   // stable
                        int need = 0; double cum = 0;
                        foreach (var c in ranked) { cum += mass[b, h, I, c]; if (cum <= tau) need++; }
                        need = Math.Min(Math.Max(need + 1, minTopK), nc);
                        for (int m = 0; m < need; m++) if (ranked[m] < nb) sel[b, h, I, ranked[m]] = true;
                    }
                    if (neighbours is not null) for (int J = 0; J < nb; J++) sel[b, h, I, J] |= neighbours[I, J];

                    // GAPR
                    for (int J = 0; J < nb; J++)
                    {
                        double raw = 0, eq = 0, ek = 0;
                        for (int i = 0; i < D; i++) { raw += qbar[I, i] * kbar[J, i]; eq += dq[I, i] * kbar[J, i]; ek += qbar[I, i] * dk[J, i]; }
                        double nn = (double)Count(I) * Count(J);
                        ben[b, h, I, J] = nn * Math.Abs(raw) > nn * (Math.Abs(eq) + Math.Abs(ek));
                    }

                    // R and compensation
                    double r = 1, cwSum = 0;
                    var comp = new double[Dv];
                    if (ipar)
                    {
                        r = tail > 0 ? mass[b, h, I, nb] : 0;
                        for (int J = 0; J < nb; J++)
                        {
                            bool keep = sel[b, h, I, J] || !compensate || (gapr && !ben[b, h, I, J]);
                            if (!compensate && !sel[b, h, I, J]) continue;                          // scaling only: R = Σ_{S} P
                            if (keep) r += mass[b, h, I, J];
                            else { cwSum += mass[b, h, I, J]; for (int i = 0; i < Dv; i++) comp[i] += mass[b, h, I, J] * vbar[J, i]; }
                        }
                    }
                    R[b, h, I] = r; CW[b, h, I] = cwSum;

                    // sparse attention for each query of block I over S_I ∪ text, then O = R·O_sparse + comp
                    var keys = new List<int>();
                    for (int J = 0; J < nb; J++) if (sel[b, h, I, J]) for (int t = Start(J); t < Start(J) + Count(J); t++) keys.Add(t);
                    for (int t = 0; t < tail; t++) keys.Add(tv + t);
                    pairs += (double)Count(I) * keys.Count;
                    for (int qi = Start(I); qi < Start(I) + Count(I); qi++)
                    {
                        var o = Attend(qi, keys);
                        for (int i = 0; i < Dv; i++) output[((b * T + qi) * H + h) * Dv + i] = r * o[i] + comp[i];
                    }
                }
                // text queries: full attention
                var all = Enumerable.Range(0, T).ToList();
                for (int qi = tv; qi < T; qi++)
                {
                    var o = Attend(qi, all);
                    for (int i = 0; i < Dv; i++) output[((b * T + qi) * H + h) * Dv + i] = o[i];
                }
                pairs += (double)tail * T;

                double[] Attend(int qi, List<int> keys)
                {
                    var s = new double[keys.Count];
                    for (int m = 0; m < keys.Count; m++)
                    {
                        double x = 0;
                        for (int i = 0; i < D; i++) x += Qa(b, qi, h, i) * Ka(b, keys[m], h, i);
                        s[m] = x * scale;
                    }
                    double mx = s.Max(), z = 0;
                    for (int m = 0; m < s.Length; m++) { s[m] = Math.Exp(s[m] - mx); z += s[m]; }
                    var o = new double[Dv];
                    for (int m = 0; m < s.Length; m++) for (int i = 0; i < Dv; i++) o[i] += s[m] / z * Va(b, keys[m], h, i);
                    return o;
                }
            }
        var outT = torch.tensor(output, new long[] { bt, T, H, Dv }, ScalarType.Float64);
        return new NaiveRectified(outT, R, CW, sel, ben, mass, pairs / ((double)bt * H * T * T));
    }
}
