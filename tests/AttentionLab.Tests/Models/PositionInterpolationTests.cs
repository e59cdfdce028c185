using System.Text.Json;
using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Tests.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

/// <summary>RoPE position interpolation in the TinyGpt config (issue 13; Chen et al. 2023): p ↦ p · train_len / target_len.</summary>
public class PositionInterpolationTests
{
    /// <summary>Rotate-half RoPE written out in doubles at a real-valued position p: angle_i = p · base^{−2i/D}.</summary>
    static double[] RotateAt(double[] x, double p, double @base = 10000)
    {
        int d = x.Length, half = d / 2;
        var y = new double[d];
        for (int i = 0; i < half; i++)
        {
            double a = p * Math.Pow(@base, -2.0 * i / d), c = Math.Cos(a), s = Math.Sin(a);
            y[i] = x[i] * c - x[i + half] * s;
            y[i + half] = x[i + half] * c + x[i] * s;
        }
        return y;
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(0.25)]
    [InlineData(0.4)]
    public void ScaledRopeIsRopeAtTheFractionalPosition(double scale)
    {
        using var scope = NewDisposeScope();
        var x = torch.randn(new long[] { 1, 5, 2, 6 }, dtype: ScalarType.Float64, generator: new Generator(1));
        var pos = torch.tensor(new long[] { 0, 1, 3, 7, 250 });
        var rotated = Positions.Rope(x, pos, positionScale: scale);
        var xs = x.data<double>().ToArray();
        long[] p = [0, 1, 3, 7, 250];
        for (int t = 0; t < 5; t++)
            for (int h = 0; h < 2; h++)
            {
                var expected = RotateAt(xs.Skip((t * 2 + h) * 6).Take(6).ToArray(), p[t] * scale);   // RoPE at position p · scale
                var actual = rotated[0, t, h].data<double>().ToArray();
                for (int i = 0; i < 6; i++) Assert.Equal(expected[i], actual[i], 12);
            }
    }

    [Fact]
    public void ScaleOneIsTodaysRope()
    {
        using var scope = NewDisposeScope();
        var baseConfig = new TinyGptConfig(Layers: 2, DModel: 16, Heads: 2, Positions: PositionKind.Rope, VocabSize: 9);
        Assert.Equal(1.0, baseConfig.RopeScale);
        torch.manual_seed(2);
        using var today = new TinyGpt(baseConfig);
        torch.manual_seed(2);
        using var explicitOne = new TinyGpt(baseConfig.WithPositionInterpolation(64, 64));
        var x = torch.randint(0, 9, new long[] { 2, 11 });
        Assert.True(TensorAssert.Same(explicitOne.call(x), today.call(x)), "RopeScale 1 must be today's RoPE bit for bit");
    }

    [Fact]
    public void InterpolatedLayerAtPosition2pEqualsThePlainLayerAtP()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(3);
        using var plain = new CausalSelfAttention(16, 2, PositionKind.Rope);
        torch.manual_seed(3);
        using var interpolated = new CausalSelfAttention(16, 2, PositionKind.Rope, ropeScale: 0.5);
        plain.to(ScalarType.Float64);
        interpolated.to(ScalarType.Float64);
        var x = torch.randn(new long[] { 2, 6, 16 }, dtype: ScalarType.Float64, generator: new Generator(4));
        var (q, k, v) = plain.Project(x);
        var p = torch.arange(6);
        var (zPlain, aPlain) = plain.Attend(q, k, v, p, p);
        var (zInterp, aInterp) = interpolated.Attend(q, k, v, p * 2, p * 2);           // RoPE(2p · ½) = RoPE(p)
        AssertClose.Tensors(aInterp, aPlain, 1e-12, 1e-12, "pattern at 2p with scale ½ vs at p");
        AssertClose.Tensors(zInterp, zPlain, 1e-12, 1e-12, "z at 2p with scale ½ vs at p");
        var (_, aUnscaled) = plain.Attend(q, k, v, p * 2, p * 2);
        Assert.True(aUnscaled.sub(aPlain).abs().max().item<double>() > 1e-6, "without interpolation, doubling positions changes the pattern");
    }

    [Fact]
    public void InterpolatedModelDecodesLikeItsForward()
    {
        using var scope = NewDisposeScope();
        var config = new TinyGptConfig(Layers: 2, DModel: 16, Heads: 2, Positions: PositionKind.Rope, VocabSize: 9).WithPositionInterpolation(8, 32);
        Assert.Equal(0.25, config.RopeScale);
        torch.manual_seed(5);
        using var model = new TinyGpt(config);
        var x = torch.randint(0, 9, new long[] { 2, 10 });
        using var _ = torch.no_grad();
        var full = model.call(x);
        using var state = model.NewState(2);
        var steps = Enumerable.Range(0, 10).Select(t => model.Step(x.select(1, t), state)).ToArray();
        AssertClose.Tensors(torch.stack(steps, 1), full, 1e-5, 1e-5, "PI decode vs forward");
        torch.manual_seed(5);
        using var unscaled = new TinyGpt(config with { RopeScale = 1 });
        Assert.True(unscaled.call(x).sub(full).abs().max().item<float>() > 1e-5f, "the scale must reach the layers");
    }

    [Fact]
    public void OldConfigsWithoutTheFieldReadAsScaleOneAndBadScalesThrow()
    {
        var json = JsonSerializer.Serialize(new TinyGptConfig(Positions: PositionKind.Rope, VocabSize: 5));
        var old = json.Replace(",\"RopeScale\":1", "", StringComparison.Ordinal);
        Assert.DoesNotContain("RopeScale", old, StringComparison.Ordinal);
        Assert.Equal(1.0, JsonSerializer.Deserialize<TinyGptConfig>(old)!.RopeScale);
        Assert.Equal("RopeScale", Assert.Throws<ArgumentException>(() => new TinyGptConfig(RopeScale: 0).Validate()).ParamName);
        Assert.Equal("RopeScale", Assert.Throws<ArgumentException>(() => new TinyGptConfig(RopeScale: double.NaN).Validate()).ParamName);
        Assert.Equal("targetLength", Assert.Throws<ArgumentException>(() => new TinyGptConfig().WithPositionInterpolation(64, 0)).ParamName);
        Assert.Equal("ropeScale", Assert.Throws<ArgumentException>(() => new CausalSelfAttention(8, 2, PositionKind.Rope, ropeScale: -1)).ParamName);
    }
}
