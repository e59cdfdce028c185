using System.Globalization;
using System.Text;

namespace GpuCheck.Tests;

/// <summary>A CSV file read whole: the header and the rows as column → text (RFC 4180 quoting).</summary>
public sealed class CsvTable
{
    public CsvTable(string path)
    {
        Assert.True(File.Exists(path), $"{path} was not written");
        var lines = Records(File.ReadAllText(path)).ToList();
        Assert.NotEmpty(lines);
        Header = lines[0];
        Rows = lines.Skip(1).Select(r =>
        {
            Assert.True(r.Count == Header.Count, $"{Path.GetFileName(path)}: a row has {r.Count} fields, the header {Header.Count}: {string.Join(",", r)}");
            return (IReadOnlyDictionary<string, string>)Header.Zip(r).ToDictionary(p => p.First, p => p.Second);
        }).ToList();
    }

    public IReadOnlyList<string> Header { get; }
    public IReadOnlyList<IReadOnlyDictionary<string, string>> Rows { get; }

    public static double Number(string text) => double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);

    static IEnumerable<List<string>> Records(string text)
    {
        var field = new StringBuilder();
        var record = new List<string>();
        bool quoted = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                else if (c == '"') quoted = false;
                else field.Append(c);
            }
            else if (c == '"') quoted = true;
            else if (c == ',') { record.Add(field.ToString()); field.Clear(); }
            else if (c == '\n')
            {
                record.Add(field.ToString()); field.Clear();
                yield return record;
                record = new List<string>();
            }
            else if (c != '\r') field.Append(c);
        }
        if (field.Length > 0 || record.Count > 0) { record.Add(field.ToString()); yield return record; }
    }
}
