using AttentionLab.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Data;

public class ShapeImagesTests
{
    [Theory]
    [InlineData(16)]
    [InlineData(32)]
    public void ShapeTestRecognisesRenderedShapes(int size)
    {
        var rng = new Random(4);
        int right = 0, total = 60;
        for (int i = 0; i < total; i++)
        {
            var scene = ShapeImages.RandomScene(rng);
            using var img = ShapeImages.Render(scene, size);
            right += ShapeImages.Classify(img) == scene.Kind ? 1 : 0;
            using var fg = ImageMasks.Foreground(img);
            Assert.Equal(1, ImageMasks.ConnectedComponents(fg));
        }
        Assert.True(right >= 0.9 * total, $"shape test right on {right}/{total} clean renders at {size} px");
    }

    [Fact]
    public void ScenesAreResolutionFree()
    {
        var scene = new ShapeScene(ShapeKind.Square, 0, 0.5, 0.5, 0.25);
        using var small = ShapeImages.Render(scene, 8);
        using var big = ShapeImages.Render(scene, 16);
        using var down = nn.functional.avg_pool2d(big.unsqueeze(0), 2)[0];
        Assert.True(TensorBits.Same(down, small));
        Assert.True(small.min().item<float>() >= -1 && small.max().item<float>() <= 1);
    }

    [Fact]
    public void ComponentsAreEightConnected()
    {
        var m = new bool[5 * 5];
        m[0] = true; m[6] = true;            // diagonal neighbours: one component
        m[4] = true; m[24] = true; m[23] = true;
        using var mask = torch.tensor(m, new long[] { 5, 5 });
        var parts = ImageMasks.Components(mask);
        Assert.Equal(new[] { 2, 2, 1 }, parts.Select(p => p.Area).ToArray());
        Assert.Equal(2, ImageMasks.ConnectedComponents(mask, minArea: 2));
        Assert.Equal("mask", Assert.Throws<ArgumentException>(() => ImageMasks.Components(mask.to(float32))).ParamName);
    }

    [Fact]
    public void SharpEdgesScoreHigherThanBlurred()
    {
        using var img = ShapeImages.Render(new ShapeScene(ShapeKind.Square, 3, 0.5, 0.5, 0.3), 32);
        using var blur = nn.functional.avg_pool2d(img.unsqueeze(0), 3, stride: 1, padding: 1, count_include_pad: false)[0];
        Assert.True(ImageMasks.EdgeSharpness(img) > 1.5 * ImageMasks.EdgeSharpness(blur));
    }
}
