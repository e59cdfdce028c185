using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RoutingTransformer;

/// <summary>
/// Token shift in front of a mixer (lucidrains/routing-transformer's <c>shift_tokens</c>, <c>PreShiftTokens(shifts = (0, 1))</c>):
/// the second half of the features of position t is replaced by that of position t − 1 (zeros at t = 0), so the mixer
/// sees each token beside its predecessor. Causal; no parameters. x [B, T, d] → inner(shift(x)).
/// </summary>
/// <remarks>shift(x)_t = [x_t[: ⌊d/2⌋], x_{t−1}[⌊d/2⌋ :]],  x_{−1} = 0.</remarks>
public sealed class TokenShift : nn.Module<Tensor, Tensor>
{
    readonly nn.Module<Tensor, Tensor> inner;

    /// <param name="inner">the mixer that reads the shifted features.</param>
    public TokenShift(nn.Module<Tensor, Tensor> inner) : base(nameof(TokenShift))
    {
        ArgumentNullException.ThrowIfNull(inner);
        this.inner = inner;
        RegisterComponents();
    }

    /// <summary>The wrapped mixer.</summary>
    public nn.Module<Tensor, Tensor> Inner => inner;

    /// <summary>shift(x) for x [B, T, d].</summary>
    public static Tensor Shift(Tensor x)
    {
        Guard.Rank(x, 3, nameof(x), "B, T, d");
        using var scope = NewDisposeScope();
        long half = x.shape[2] / 2, rest = x.shape[2] - half;
        var moved = nn.functional.pad(x.narrow(2, half, rest), new long[] { 0, 0, 1, 0 }).narrow(1, 0, x.shape[1]);   // x_{t−1}, 0 at t = 0
        return torch.cat(new[] { x.narrow(2, 0, half), moved }, 2).MoveToOuterDisposeScope();
    }

    public override Tensor forward(Tensor x) => inner.call(Shift(x));
}
