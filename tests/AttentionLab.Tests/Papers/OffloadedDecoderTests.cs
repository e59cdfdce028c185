using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Papers.AttentionOffloading;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class OffloadedDecoderTests
{
    static TinyGptConfig Config(PositionKind positions, AttentionKind kind = AttentionKind.Softmax) =>
        new(Layers: 2, DModel: 24, Heads: 3, VocabSize: 11, Positions: positions, MaxLength: 64, Attention: kind);

    [Theory]
    [InlineData(PositionKind.Rope, AttentionKind.Softmax)]
    [InlineData(PositionKind.Alibi, AttentionKind.Softmax)]
    [InlineData(PositionKind.Rope, AttentionKind.GatedG1)]
    [InlineData(PositionKind.None, AttentionKind.Softmax1)]
    public void OffloadedDecodingEqualsLocalDecodingAndCountsTheFormulasBytes(PositionKind positions, AttentionKind kind)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(6);
        var config = Config(positions, kind);
        using var model = new TinyGpt(config);
        model.eval();
        using var noGrad = torch.no_grad();
        int batch = 2, steps = 19;
        var tokens = torch.randint(config.VocabSize, new long[] { batch, steps });
        using var offloaded = new OffloadedDecoder(model, CPU, CPU, batch);
        using var local = model.NewState(batch);
        var forward = model.call(tokens);
        for (int t = 0; t < steps; t++)
        {
            var a = offloaded.Step(tokens.select(1, t));
            var b = model.Step(tokens.select(1, t), local);
            Assert.True((a - b).abs().max().ToDouble() <= 1e-6, $"step {t}: offloaded vs local");
            Assert.True((a - forward.select(1, t)).abs().max().ToDouble() <= 1e-4, $"step {t}: offloaded vs forward");
        }
        var stats = offloaded.Stats;
        Assert.Equal(steps, stats.Steps);
        long expected = OffloadedDecoder.BytesPerTokenPerLayer(config) * config.Layers * batch * steps;
        Assert.Equal(expected, stats.BytesToAttention + stats.BytesToModel);
        Assert.Equal(3 * stats.BytesToModel, stats.BytesToAttention);                 // q, k, v out; z back (MHA: all d wide)
        Assert.Equal(local.Bytes, offloaded.KvBytes);
        Assert.True(stats.MsTotal >= stats.MsAttention + stats.MsTransfer - 1e-9);
    }

    [Fact]
    public void FunctionalOffloadReportsConstantLinkBytesAndGrowingKvReads()
    {
        var points = FunctionalOffload.Run(new[] { 12, 40 }, batch: 1, steps: 4, CPU, CPU);
        Assert.All(points, p => Assert.True(p.MaxAbsVsLocal <= 1e-5, $"n = {p.Context}: {p.MaxAbsVsLocal}"));
        Assert.All(points, p => Assert.Equal(p.FormulaBytesPerToken, p.NetworkBytesPerToken, 6));
        Assert.True(points[1].KvBytesReadPerToken > 3 * points[0].KvBytesReadPerToken);
        Assert.Equal(8, FunctionalOffload.ToDataFrame(points).Columns.Count);
    }

    [Fact]
    public void BadInputsAreNamedAndStepDoesNotLeak()
    {
        using var mixed = new TinyGpt(Config(PositionKind.Rope), layer => new AttentionLab.Papers.Aaren.AarenLayer(24, 3));
        Assert.Equal("model", Assert.Throws<ArgumentException>(() => new OffloadedDecoder(mixed, CPU, CPU, 1)).ParamName);
        using var sink = new TinyGpt(Config(PositionKind.Rope, AttentionKind.SinkLogit));
        Assert.Equal("model", Assert.Throws<ArgumentException>(() => new OffloadedDecoder(sink, CPU, CPU, 1)).ParamName);
        using var model = new TinyGpt(Config(PositionKind.Rope));
        Assert.Equal("batch", Assert.ThrowsAny<ArgumentException>(() => new OffloadedDecoder(model, CPU, CPU, 0)).ParamName);
        using var decoder = new OffloadedDecoder(model, CPU, CPU, 2);
        using var wrong = torch.zeros(3, dtype: ScalarType.Int64);
        Assert.Equal("tokens", Assert.Throws<ArgumentException>(() => decoder.Step(wrong)).ParamName);
        using var ids = torch.zeros(2, dtype: ScalarType.Int64);
        using var noGrad = torch.no_grad();
        LeakCheck.AssertNoLeak(() => decoder.Step(ids).Dispose(), "OffloadedDecoder.Step");
    }
}
