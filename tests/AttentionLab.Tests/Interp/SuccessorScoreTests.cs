using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Interp;

/// <summary>The succession score (Gould et al. 2023) on circuits whose answer is known, and its argument checks.</summary>
public class SuccessorScoreTests
{
    [Fact]
    public void AShiftCircuitScoresOneAndTheIdentityScoresZero()
    {
        var ordinal = new long[] { 5, 2, 7, 0, 3 };
        var shift = torch.zeros(8, 8, dtype: float64);
        for (int i = 0; i + 1 < ordinal.Length; i++) shift[ordinal[i], ordinal[i + 1]] = torch.tensor(1.0);
        Assert.Equal(1.0, SuccessorScore.Of(shift, ordinal));
        Assert.Equal(0.0, SuccessorScore.Of(torch.eye(8, dtype: float64).mul(3), ordinal));
    }

    [Fact]
    public void ItCountsEachHitOnce()
    {
        // Rows for o_0 and o_2 point at their successors, o_1 at o_0, o_3 at itself: 2 of 4.
        var ordinal = new long[] { 0, 1, 2, 3, 4 };
        var m = torch.zeros(5, 5, dtype: float64);
        m[0, 1] = torch.tensor(1.0); m[1, 0] = torch.tensor(1.0); m[2, 3] = torch.tensor(1.0); m[3, 3] = torch.tensor(1.0);
        Assert.Equal(0.5, SuccessorScore.Of(m, ordinal));
    }

    [Fact]
    public void ItReadsOnlyTheOrdinalColumns()
    {
        // A large logit on a non-ordinal token (6) does not hide the successor among the ordinal ones.
        var ordinal = new long[] { 0, 1, 2 };
        var m = torch.zeros(7, 7, dtype: float64);
        m[0, 6] = torch.tensor(9.0); m[0, 1] = torch.tensor(1.0); m[1, 6] = torch.tensor(9.0); m[1, 2] = torch.tensor(1.0);
        Assert.Equal(1.0, SuccessorScore.Of(m, ordinal));
    }

    [Fact]
    public void NaNGivesNaN()
    {
        var m = torch.eye(4, dtype: float64);
        m[1, 2] = torch.tensor(double.NaN);
        Assert.True(double.IsNaN(SuccessorScore.Of(m, new long[] { 0, 1, 2, 3 })));
    }

    [Fact]
    public void BadArgumentsAreNamed()
    {
        var m = torch.eye(4);
        Assert.Equal("ordinal", Assert.Throws<ArgumentException>(() => SuccessorScore.Of(m, new long[] { 1 })).ParamName);
        Assert.Equal("ordinal", Assert.Throws<ArgumentException>(() => SuccessorScore.Of(m, new long[] { 1, 4 })).ParamName);
        Assert.Equal("ordinal", Assert.Throws<ArgumentException>(() => SuccessorScore.Of(m, new long[] { 1, 1 })).ParamName);
        Assert.Equal("circuit", Assert.Throws<ArgumentException>(() => SuccessorScore.Of(torch.zeros(3, 4), new long[] { 0, 1 })).ParamName);
    }

    [Fact]
    public void HeadsReadsEachHeadsCircuit()
    {
        torch.manual_seed(0);
        using var model = new TinyGpt(new TinyGptConfig(Layers: 2, DModel: 16, Heads: 2, VocabSize: 10, Mlp: false));
        var ordinal = new long[] { 1, 2, 3, 4, 5 };
        var scores = SuccessorScore.Heads(model, ordinal);
        for (int l = 0; l < 2; l++)
            for (int h = 0; h < 2; h++)
            {
                using var circuit = CopyingScore.Circuit(model, l, h);
                Assert.Equal(SuccessorScore.Of(circuit, ordinal), scores[l, h]);
            }
    }
}
