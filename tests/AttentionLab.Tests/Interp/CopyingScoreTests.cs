using AttentionLab.Core;
using AttentionLab.Attention;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Interp;

/// <summary>The copying score on matrices whose eigenvalues are known, and the OV circuit against its product written out.</summary>
public class CopyingScoreTests
{
    [Fact]
    public void KnownEigenvaluesGiveKnownScores()
    {
        Assert.Equal(1, CopyingScore.Of(torch.eye(5, dtype: ScalarType.Float64)), 12);              // copies every token
        Assert.Equal(-1, CopyingScore.Of(-2 * torch.eye(3, dtype: ScalarType.Float64)), 12);         // suppresses it
        Assert.Equal(0, CopyingScore.Of(torch.tensor(new double[,] { { 0, -1 }, { 1, 0 } })), 12);   // a rotation: ±i
        Assert.Equal(1 / 3.0, CopyingScore.Of(torch.diag(torch.tensor(new double[] { 2, -1, 0 }))), 12); // (2 − 1) / (2 + 1)
        // similar matrices share eigenvalues: P D P⁻¹ scores as D
        var p = torch.tensor(new double[,] { { 1, 2, 0 }, { 0, 1, 1 }, { 1, 0, 1 } });
        var d = torch.diag(torch.tensor(new double[] { 3, 1, -1 }));
        Assert.Equal(3 / 5.0, CopyingScore.Of(p.matmul(d).matmul(torch.linalg.inv(p))), 10);
        Assert.True(double.IsNaN(CopyingScore.Of(torch.zeros(3, 3))));
        Assert.True(double.IsNaN(CopyingScore.Of(torch.tensor(new double[,] { { double.NaN, 0 }, { 0, 1 } }))));
        Assert.Equal("circuit", Assert.Throws<ArgumentException>(() => CopyingScore.Of(torch.zeros(2, 3))).ParamName);
    }

    [Fact]
    public void TheCircuitIsEmbedValueOutputUnembed()
    {
        torch.manual_seed(7);
        using var model = new TinyGpt(new TinyGptConfig(Layers: 2, DModel: 8, Heads: 2, MlpRatio: 2, VocabSize: 10, MaxLength: 8));
        model.to(ScalarType.Float64);
        using var scope = NewDisposeScope();
        var mixer = (AttentionMixer)model.Blocks[1].Mixer;
        var wE = ((TorchSharp.Modules.Embedding)model.Embed).weight!;
        var (wU, _) = model.Unembedding!.Value;
        int dh = 4;
        var wV = mixer.Qkv.weight!.narrow(0, 2 * 8 + dh, dh).t();                                 // head 1's W_V [d, Dh] (rows q | k | v)
        var wO = mixer.Proj.weight!.narrow(1, dh, dh).t();                                          // head 1's W_O [Dh, d]
        var expected = wE.matmul(wV).matmul(wO).matmul(wU);
        AssertClose.Tensors(CopyingScore.Circuit(model, 1, 1), expected, atol: 1e-12, rtol: 1e-12, what: "W_E W_V W_O W_U");
        var scores = CopyingScore.Heads(model);
        Assert.Equal(CopyingScore.Of(expected), scores[1, 1], 10);
        Assert.All(Enumerable.Range(0, 4), i => Assert.InRange(scores[i / 2, i % 2], -1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => CopyingScore.Circuit(model, 2, 0));
    }
}
