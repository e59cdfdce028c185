using static TorchSharp.torch;

namespace AttentionLab.Papers.RectifiedSpaAttn;

/// <summary>
/// What one rectified block-sparse forward decided, per (batch, head, query block I, key block J) over the visual
/// blocks. Owns its tensors (dispose it). Shapes: nb = visual blocks, nc = nb + 1 when there are text tokens (the last
/// column is the text mass) else nb.
/// </summary>
public sealed class RectifyDiagnostics : IDisposable
{
    internal RectifyDiagnostics(double density, int block, int visualTokens, int textTokens, Tensor r, Tensor compensationWeight,
        Tensor selected, Tensor beneficial, Tensor compensated, Tensor estimatedMass, Tensor? trueMass)
    {
        Density = density; Block = block; VisualTokens = visualTokens; TextTokens = textTokens;
        R = r; CompensationWeight = compensationWeight; Selected = selected; Beneficial = beneficial; Compensated = compensated;
        EstimatedMass = estimatedMass; TrueMass = trueMass;
    }

    /// <summary>Fraction of (query, key) token pairs the sparse kernel computes, over T² (text queries count as dense), mean over batch and heads.</summary>
    public double Density { get; }
    /// <summary>Block size B.</summary>
    public int Block { get; }
    /// <summary>Visual tokens T_v (= T − text tokens).</summary>
    public int VisualTokens { get; }
    /// <summary>Isolated text tokens at the end of the sequence.</summary>
    public int TextTokens { get; }
    /// <summary>Visual blocks nb = ⌈T_v / B⌉.</summary>
    public int VisualBlocks => (VisualTokens + Block - 1) / Block;
    /// <summary>R_I [Bt, H, nb]: the factor on the sparse output (1 without IPAR).</summary>
    public Tensor R { get; }
    /// <summary>Σ_{J compensated} P_IJ [Bt, H, nb]: the weight of the pooled compensation term; R + this = 1 when compensating.</summary>
    public Tensor CompensationWeight { get; }
    /// <summary>Critical set S_I over visual key blocks [Bt, H, nb, nb] (bool; text is always in S_I).</summary>
    public Tensor Selected { get; }
    /// <summary>GAPR verdict for every visual pair [Bt, H, nb, nb] (bool): gain B²|q̄·k̄| &gt; pooling error.</summary>
    public Tensor Beneficial { get; }
    /// <summary>Blocks whose mass was added back as P_IJ·v̄_J [Bt, H, nb, nb] (bool): J ∉ S_I and (beneficial or GAPR off).</summary>
    public Tensor Compensated { get; }
    /// <summary>IPAR estimate P [Bt, H, nb, nc] of the full-attention mass of each key block (last column: all text).</summary>
    public Tensor EstimatedMass { get; }
    /// <summary>True full-attention block mass [Bt, H, nb, nc] averaged over the queries of block I; null unless asked for.</summary>
    public Tensor? TrueMass { get; }

    /// <summary>Share of dropped pairs (J ∉ S_I) that GAPR judges beneficial; NaN when nothing was dropped.</summary>
    public double FractionBeneficial()
    {
        using var scope = NewDisposeScope();
        var dropped = Selected.logical_not();
        long n = dropped.sum().item<long>();
        return n == 0 ? double.NaN : (dropped & Beneficial).sum().item<long>() / (double)n;
    }

    /// <summary>Share of visual block pairs in the critical sets.</summary>
    public double SelectedFraction()
    {
        using var scope = NewDisposeScope();
        return Selected.to(ScalarType.Float64).mean().item<double>();
    }

    public void Dispose()
    {
        R.Dispose(); CompensationWeight.Dispose(); Selected.Dispose(); Beneficial.Dispose(); Compensated.Dispose();
        EstimatedMass.Dispose(); TrueMass?.Dispose();
    }
}

/// <summary>The estimation stage alone (pooled scores, IPAR mass, critical sets, GAPR), for timing its overhead.</summary>
public sealed class RectifyEstimate : IDisposable
{
    internal RectifyEstimate(Tensor mass, Tensor selected, Tensor beneficial) { EstimatedMass = mass; Selected = selected; Beneficial = beneficial; }
    /// <summary>P [Bt, H, nb, nc].</summary>
    public Tensor EstimatedMass { get; }
    /// <summary>S_I [Bt, H, nb, nb] (bool).</summary>
    public Tensor Selected { get; }
    /// <summary>GAPR G &gt; E [Bt, H, nb, nb] (bool).</summary>
    public Tensor Beneficial { get; }
    public void Dispose() { EstimatedMass.Dispose(); Selected.Dispose(); Beneficial.Dispose(); }
}
