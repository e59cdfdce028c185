using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Data;

/// <summary>The shape classes of <see cref="ShapeImages"/>.</summary>
public enum ShapeKind { Square = 0, Circle = 1, Triangle = 2 }

/// <summary>One drawn scene: class, colour index, centre and half-size in unit image coordinates [0, 1].</summary>
public readonly record struct ShapeScene(ShapeKind Kind, int Colour, double CenterX, double CenterY, double Radius);

/// <summary>
/// Synthetic images for the tiny image-generation papers: one coloured shape on a black background, class = shape.
/// Scenes live in continuous unit coordinates, so the same scene renders at any resolution (a 2× render is the same
/// picture with twice the pixels) — what a resolution-extrapolation experiment needs as its "ground truth".
/// </summary>
/// <remarks>
/// Pixel (r, c) of an S×S image samples the point ((c + ½)/S, (r + ½)/S). Inside tests, with centre (x₀, y₀), half-size ρ:
/// square max(|x − x₀|, |y − y₀|) ≤ ρ; circle (x − x₀)² + (y − y₀)² ≤ ρ²; triangle (apex up) y − y₀ ≥ −ρ, y − y₀ ≤ ρ,
/// |x − x₀| ≤ (y − y₀ + ρ)/2 (base 2ρ at the bottom). Values: background −1, shape = the palette colour in {−1, +1}³
/// (at least one channel +1), so every channel lies in [−1, 1].
/// </remarks>
public static class ShapeImages
{
    /// <summary>Number of classes (square, circle, triangle).</summary>
    public const int Classes = 3;

    /// <summary>Six saturated colours (RGB in {−1, +1}, never all −1): red, green, blue, yellow, cyan, magenta.</summary>
    public static readonly float[][] Palette =
    {
        new[] { 1f, -1f, -1f }, new[] { -1f, 1f, -1f }, new[] { -1f, -1f, 1f },
        new[] { 1f, 1f, -1f }, new[] { -1f, 1f, 1f }, new[] { 1f, -1f, 1f },
    };

    /// <summary>Draws a random scene: half-size in [0.2, 0.3], centre so that the shape stays inside the image.</summary>
    public static ShapeScene RandomScene(Random rng, ShapeKind? kind = null)
    {
        ArgumentNullException.ThrowIfNull(rng);
        var k = kind ?? (ShapeKind)rng.Next(Classes);
        double r = 0.2 + 0.1 * rng.NextDouble();
        double Centre() => r + 0.02 + (1 - 2 * r - 0.04) * rng.NextDouble();
        return new ShapeScene(k, rng.Next(Palette.Length), Centre(), Centre(), r);
    }

    /// <summary>True when the unit-coordinate point (x, y) is inside the scene's shape (the remarks' tests).</summary>
    public static bool Inside(ShapeScene s, double x, double y)
    {
        double dx = x - s.CenterX, dy = y - s.CenterY;
        return s.Kind switch
        {
            ShapeKind.Square => Math.Max(Math.Abs(dx), Math.Abs(dy)) <= s.Radius,
            ShapeKind.Circle => dx * dx + dy * dy <= s.Radius * s.Radius,
            ShapeKind.Triangle => dy >= -s.Radius && dy <= s.Radius && Math.Abs(dx) <= (dy + s.Radius) / 2,
            _ => throw new ArgumentOutOfRangeException(nameof(s), s.Kind, "unknown shape."),
        };
    }

    /// <summary>One image [3, size, size] in [−1, 1].</summary>
    public static Tensor Render(ShapeScene scene, int size)
    {
        Guard.Positive(size, nameof(size));
        var data = new float[3 * size * size];
        Array.Fill(data, -1f);
        var colour = Palette[scene.Colour];
        for (int r = 0; r < size; r++)
            for (int c = 0; c < size; c++)
                if (Inside(scene, (c + 0.5) / size, (r + 0.5) / size))
                    for (int ch = 0; ch < 3; ch++) data[(ch * size + r) * size + c] = colour[ch];
        return torch.tensor(data, new long[] { 3, size, size });
    }

    /// <summary>A batch: images [B, 3, size, size] and labels [B] (int64), drawn from <paramref name="seed"/>.</summary>
    public static (Tensor Images, Tensor Labels, ShapeScene[] Scenes) Batch(int batch, int size, int seed, Device? device = null)
    {
        Guard.Positive(batch, nameof(batch));
        Guard.Positive(size, nameof(size));
        var rng = new Random(seed);
        var scenes = Enumerable.Range(0, batch).Select(_ => RandomScene(rng)).ToArray();
        using var scope = NewDisposeScope();
        var images = torch.stack(scenes.Select(s => Render(s, size)).ToArray()).to(device ?? CPU);
        var labels = torch.tensor(scenes.Select(s => (long)s.Kind).ToArray()).to(device ?? CPU);
        return (images.MoveToOuterDisposeScope(), labels.MoveToOuterDisposeScope(), scenes);
    }

    /// <summary>
    /// The documented shape test standing in for a classifier: the largest 8-connected foreground component's fill ratio
    /// f = area / bounding-box area is 1 for a square, π/4 ≈ 0.785 for a circle and ½ for the triangle, so
    /// f ≥ 0.89 → square, f ≥ 0.64 → circle, else triangle (the midpoints). Null when there is no foreground component
    /// of at least <paramref name="minArea"/> pixels.
    /// </summary>
    public static ShapeKind? Classify(Tensor image, int minArea = 4)
    {
        using var fg = ImageMasks.Foreground(image);
        var parts = ImageMasks.Components(fg, minArea);
        if (parts.Count == 0) return null;
        double fill = parts[0].Area / (double)parts[0].BoxArea;
        return fill >= 0.89 ? ShapeKind.Square : fill >= 0.64 ? ShapeKind.Circle : ShapeKind.Triangle;
    }
}
