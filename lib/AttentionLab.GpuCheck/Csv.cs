using System.Globalization;
using System.Text;

namespace AttentionLab.GpuCheck;

/// <summary>A CSV file written row by row and flushed each time, so a run cut short still leaves what it measured.</summary>
public sealed class CsvFile : IDisposable
{
    readonly StreamWriter writer;
    public string[] Header { get; }
    public string Path { get; }

    public CsvFile(string path, params string[] header)
    {
        Path = path;
        Header = header;
        writer = new StreamWriter(path, append: false, new UTF8Encoding(false)) { NewLine = "\n" };
        writer.WriteLine(string.Join(',', header));
        writer.Flush();
    }

    public void Row(params object?[] values)
    {
        if (values.Length != Header.Length)
            throw new ArgumentException($"{System.IO.Path.GetFileName(Path)}: {values.Length} values for {Header.Length} columns.", nameof(values));
        writer.WriteLine(string.Join(',', values.Select(Field)));
        writer.Flush();
    }

    public static string Field(object? value) => value switch
    {
        null => "",
        double d when double.IsNaN(d) => "",
        double d => d.ToString("G6", CultureInfo.InvariantCulture),
        float f => ((double)f).ToString("G6", CultureInfo.InvariantCulture),
        IFormattable f => Quote(f.ToString(null, CultureInfo.InvariantCulture)),
        _ => Quote(value.ToString() ?? ""),
    };

    static string Quote(string s) => s.IndexOfAny(new[] { ',', '"', '\n', '\r' }) < 0 ? s : "\"" + s.Replace("\"", "\"\"") + "\"";

    public void Dispose() => writer.Dispose();
}
