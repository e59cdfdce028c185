using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RectifiedSpaAttn;

/// <summary>Mean pooling of consecutive tokens into blocks, the "implicit full attention" estimate's inputs.</summary>
/// <remarks>
/// x̄_J = (1/n_J) Σ_{j ∈ J} x_j with J = {J·B, …, min((J+1)·B, T) − 1} and n_J = |J| (the last block may be short: it
/// is averaged over its own tokens, not padded with zeros).
/// </remarks>
public static class BlockPooling
{
    /// <summary>x [Bt, T, H, D] → block means [Bt, ⌈T/B⌉, H, D].</summary>
    public static Tensor Pool(Tensor x, int block)
    {
        Guard.Rank(x, 4, nameof(x), "batch, tokens, heads, dim");
        Guard.FloatingPoint(x, nameof(x));
        if (block <= 0) throw new ArgumentException($"block must be positive, got {block}.", nameof(block));
        if (x.shape[1] == 0) throw new ArgumentException($"x has no tokens: shape {Guard.ShapeText(x)}.", nameof(x));
        using var scope = NewDisposeScope();
        long t = x.shape[1];
        int nb = (int)((t + block - 1) / block);
        var padded = nn.functional.pad(x, new long[] { 0, 0, 0, 0, 0, nb * (long)block - t });
        var sums = padded.view(x.shape[0], nb, block, x.shape[2], x.shape[3]).sum(2);        // Σ_{j∈J} x_j
        var n = Counts((int)t, block, x.dtype, x.device).view(1, nb, 1, 1);                    // n_J
        return (sums / n).MoveToOuterDisposeScope();
    }

    /// <summary>Tokens per block n_J for T tokens in blocks of B: [⌈T/B⌉], B except a short last block.</summary>
    public static Tensor Counts(int tokens, int block, ScalarType dtype, Device? device = null)
    {
        if (tokens <= 0) throw new ArgumentException($"tokens must be positive, got {tokens}.", nameof(tokens));
        if (block <= 0) throw new ArgumentException($"block must be positive, got {block}.", nameof(block));
        return torch.tensor(CountArray(tokens, block), dtype: ScalarType.Float64).to(dtype, device ?? CPU);
    }

    /// <summary>n_J as plain numbers.</summary>
    public static double[] CountArray(int tokens, int block)
    {
        int nb = (tokens + block - 1) / block;
        return Enumerable.Range(0, nb).Select(j => (double)Math.Min(block, tokens - j * block)).ToArray();
    }
}
