using System.Globalization;
using Microsoft.Data.Analysis;

namespace AttentionLab.Bench;

/// <summary>A DataFrame as a GitHub markdown table (for docs/benchmarks.md and console output).</summary>
public static class MarkdownTable
{
    /// <summary>
    /// One header row, one row per DataFrame row; numbers in the .NET format <paramref name="formats"/> gives for their
    /// column (default: doubles with <paramref name="digits"/> decimals), nulls empty.
    /// </summary>
    public static string From(DataFrame frame, IReadOnlyDictionary<string, string>? formats = null, int digits = 2)
    {
        ArgumentNullException.ThrowIfNull(frame);
        string Cell(string column, object? value)
        {
            string? format = formats is not null && formats.TryGetValue(column, out var f) ? f : null;
            return value switch
            {
                null => "",
                double or float when format is null => ((IFormattable)value).ToString("F" + digits, CultureInfo.InvariantCulture),
                IFormattable x => x.ToString(format, CultureInfo.InvariantCulture),
                _ => value.ToString()!.Replace("|", "\\|"),
            };
        }
        var lines = new List<string>
        {
            "| " + string.Join(" | ", frame.Columns.Select(c => c.Name)) + " |",
            "|" + string.Join("|", frame.Columns.Select(_ => "---")) + "|",
        };
        for (long r = 0; r < frame.Rows.Count; r++)
            lines.Add("| " + string.Join(" | ", frame.Columns.Select(c => Cell(c.Name, c[r]))) + " |");
        return string.Join(Environment.NewLine, lines);
    }
}
