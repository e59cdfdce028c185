using System.Reflection;

namespace AttentionLab.Runner;

/// <summary>plotly.js 2.28.0 as embedded in Plotly.NET 6.0.0, written once beside the HTML pages (never a CDN).</summary>
public static class PlotlyAsset
{
    public const string FileName = "plotly-2.28.0.min.js";
    public const string ResourceName = "Plotly.NET." + FileName;
    static readonly object gate = new();
    static readonly Lazy<byte[]> bytes = new(Load);

    /// <summary>The script, read once from Plotly.NET.dll's manifest resources.</summary>
    public static byte[] Read() => bytes.Value;

    static byte[] Load()
    {
        var asm = Assembly.Load(new AssemblyName("Plotly.NET"));
        using var stream = asm.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"Plotly.NET.dll has no resource {ResourceName}.");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    /// <summary>Writes <see cref="FileName"/> into <paramref name="folder"/> unless an identical copy is there; returns its path.</summary>
    public static string EnsureWritten(string folder)
    {
        string path = Path.Combine(folder, FileName);
        lock (gate)
        {
            var script = Read();
            if (File.Exists(path) && File.ReadAllBytes(path).AsSpan().SequenceEqual(script)) return path;
            Directory.CreateDirectory(folder);
            string temp = path + ".tmp";
            File.WriteAllBytes(temp, script);
            File.Move(temp, path, overwrite: true);
            return path;
        }
    }
}
