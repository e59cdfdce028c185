using AttentionLab.Models;

namespace AttentionLab.Papers.FactualRecall;

/// <summary>The naive twin's answer for one position: shares m_c [C][d], the bias term [d], the gates [n] and MLP(x) [d].</summary>
public sealed record NaiveDecomposition(double[][] Components, double[] Bias, double[] Gates, double[] Output);

/// <summary>
/// The naive twin of <see cref="MlpDecomposer"/>: loops in float64 over one position, the MLP recomputed from its weights
/// (LayerNorm, W_in, erf-GELU, W_out) rather than read from a cache, and the decomposition written term by term.
/// </summary>
public static class FactualRecallNaive
{
    /// <summary>
    /// Decomposes MLP(x), x = Σ_c r_c, into Σ_c m_c + bias with the gate g_j = φ(u_j)/u_j and the LN scale σ frozen at x.
    /// </summary>
    /// <param name="r">Components r_c [C][d].</param>
    /// <param name="gamma">LN weight γ [d].</param>
    /// <param name="beta">LN bias β [d].</param>
    /// <param name="eps">LN ε.</param>
    /// <param name="wIn">W_in [n][d].</param>
    /// <param name="bIn">b_in [n].</param>
    /// <param name="wOut">W_out [d][n].</param>
    /// <param name="bOut">b_out [d].</param>
    public static NaiveDecomposition Linearize(double[][] r, double[] gamma, double[] beta, double eps, double[][] wIn, double[] bIn,
        double[][] wOut, double[] bOut)
    {
        ArgumentNullException.ThrowIfNull(r);
        if (r.Length == 0) throw new ArgumentException("no components.", nameof(r));
        int c = r.Length, d = gamma.Length, n = bIn.Length;
        var x = new double[d];
        for (int k = 0; k < c; k++)
            for (int i = 0; i < d; i++) x[i] += r[k][i];                                   // x = Σ_c r_c
        double mean = 0, variance = 0;
        for (int i = 0; i < d; i++) mean += x[i] / d;
        for (int i = 0; i < d; i++) variance += (x[i] - mean) * (x[i] - mean) / d;
        double sigma = Math.Sqrt(variance + eps);                                           // σ (frozen)
        var u = new double[n];
        var gate = new double[n];
        for (int j = 0; j < n; j++)
        {
            u[j] = bIn[j];
            for (int i = 0; i < d; i++) u[j] += wIn[j][i] * ((x[i] - mean) / sigma * gamma[i] + beta[i]);   // u = W_in LN(x) + b_in
            gate[j] = Math.Abs(u[j]) < MlpDecomposer.SmallPre ? MlpDecomposer.GateAtZero : Gelu(u[j]) / u[j];
        }
        var output = new double[d];
        for (int i = 0; i < d; i++)
        {
            output[i] = bOut[i];
            for (int j = 0; j < n; j++) output[i] += wOut[i][j] * Gelu(u[j]);              // MLP(x) = W_out φ(u) + b_out
        }
        var shares = new double[c][];
        for (int k = 0; k < c; k++)
        {
            double mk = 0;
            for (int i = 0; i < d; i++) mk += r[k][i] / d;
            var hidden = new double[n];
            for (int j = 0; j < n; j++)
            {
                for (int i = 0; i < d; i++) hidden[j] += wIn[j][i] * gamma[i] * (r[k][i] - mk) / sigma;   // W_in (γ ⊙ P r_c / σ)
                hidden[j] *= gate[j];                                                                   // diag(g)
            }
            shares[k] = new double[d];
            for (int i = 0; i < d; i++)
                for (int j = 0; j < n; j++) shares[k][i] += wOut[i][j] * hidden[j];                    // W_out ·
        }
        var bias = new double[d];
        for (int i = 0; i < d; i++)
        {
            bias[i] = bOut[i];
            for (int j = 0; j < n; j++)
            {
                double a = bIn[j];
                for (int l = 0; l < d; l++) a += wIn[j][l] * beta[l];
                bias[i] += wOut[i][j] * gate[j] * a;                                                   // W_out diag(g)(W_in β + b_in) + b_out
            }
        }
        return new NaiveDecomposition(shares, bias, gate, output);
    }

    /// <summary>
    /// The twin on block <paramref name="layer"/> of <paramref name="model"/> (weights read as float64) for components
    /// r_c [C][d] of its resid_mid at one position.
    /// </summary>
    public static NaiveDecomposition Linearize(TinyGpt model, int layer, double[][] r)
    {
        ArgumentNullException.ThrowIfNull(model);
        var block = model.Blocks[layer];
        var mlp = block.Mlp ?? throw new ArgumentException($"block {layer} has no TinyMlp.", nameof(layer));
        var ln = block.Norm2!;
        return Linearize(r, Vector(ln.Weight), Vector(ln.Bias), ln.Eps, Matrix(mlp.In.weight!), Vector(mlp.In.bias!), Matrix(mlp.Out.weight!),
            Vector(mlp.Out.bias!));
    }

    /// <summary>erf-GELU φ(u) = u · Φ(u) = ½ u (1 + erf(u / √2)) (TorchSharp's default gelu), in float64.</summary>
    public static double Gelu(double u) => 0.5 * u * (1 + Erf(u / Math.Sqrt(2)));

    /// <summary>
    /// erf in float64: the Maclaurin series for |x| &lt; 2.5 (terms 2/√π (−1)ᵏ x^(2k+1) / (k! (2k+1))), else 1 − erfc(|x|) with
    /// erfc's continued fraction e^(−x²)/√π · 1/(x + ½/(x + 1/(x + 3/2/(x + …)))), signed.
    /// </summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return double.NaN;
        double a = Math.Abs(x);
        if (a < 2.5)
        {
            double term = x, sum = x;
            for (int k = 1; k < 200 && Math.Abs(term) > 1e-18 * Math.Abs(sum); k++)
            {
                term *= -x * x / k;                                                         // (−1)ᵏ x^(2k+1) / k!
                sum += term / (2 * k + 1);
            }
            return 2 / Math.Sqrt(Math.PI) * sum;
        }
        double f = a;
        for (int k = 120; k >= 1; k--) f = a + k / 2.0 / f;                                // backward continued fraction
        double erfc = Math.Exp(-a * a) / Math.Sqrt(Math.PI) / f;
        return Math.Sign(x) * (1 - erfc);
    }

    static double[] Vector(TorchSharp.torch.Tensor t) => t.detach().to(TorchSharp.torch.ScalarType.Float64).cpu().data<double>().ToArray();

    static double[][] Matrix(TorchSharp.torch.Tensor t)
    {
        var flat = Vector(t);
        int rows = (int)t.shape[0], cols = (int)t.shape[1];
        return Enumerable.Range(0, rows).Select(i => flat.Skip(i * cols).Take(cols).ToArray()).ToArray();
    }
}
