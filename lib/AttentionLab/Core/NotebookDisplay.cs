using System.Net;
using System.Text;
using Microsoft.Data.Analysis;
using Microsoft.DotNet.Interactive.Formatting;
using Plotly.NET;

namespace AttentionLab.Core;

/// <summary>
/// HTML display of Plotly.NET charts and DataFrames inside a .NET Interactive kernel, offline.
/// The first chart of a process carries plotly.js inline (from Plotly.NET's own embedded copy, never a CDN) in a
/// script tagged <c>id="attnlab-plotlyjs"</c>; later charts reuse it. The runner strips that tag from gallery
/// pages, which load one shared local copy instead.
/// </summary>
public static class NotebookDisplay
{
    /// <summary>The id of the inline plotly.js script element.</summary>
    public const string PlotlyScriptId = "attnlab-plotlyjs";
    /// <summary>Rows a DataFrame shows before it says how many more there are.</summary>
    public static int MaxRows { get; set; } = 60;

    static bool registered, plotlyEmitted;
    static readonly object gate = new();

    /// <summary>Registers the formatters (idempotent; harmless outside a kernel).</summary>
    public static void Register()
    {
        lock (gate)
        {
            if (registered) return;
            Formatter.Register<GenericChart>((chart, writer) => writer.Write(ChartHtml(chart)), HtmlFormatter.MimeType);
            Formatter.Register<DataFrame>((df, writer) => writer.Write(DataFrameHtml(df)), HtmlFormatter.MimeType);
            Formatter.SetPreferredMimeTypesFor(typeof(GenericChart), HtmlFormatter.MimeType);
            Formatter.SetPreferredMimeTypesFor(typeof(DataFrame), HtmlFormatter.MimeType);
            registered = true;
        }
    }

    /// <summary>plotly.js as shipped inside Plotly.NET (2.28.0).</summary>
    public static string PlotlyJs()
    {
        var asm = typeof(GenericChart).Assembly;
        string name = asm.GetManifestResourceNames().Single(n => n.StartsWith("Plotly.NET.plotly-", StringComparison.Ordinal) && n.EndsWith(".min.js", StringComparison.Ordinal));
        using var stream = asm.GetManifestResourceStream(name)!;
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>A chart as a div plus script; the first call in a process also inlines plotly.js.</summary>
    public static string ChartHtml(GenericChart chart)
    {
        var body = GenericChart.toChartHTML(chart);
        lock (gate)
        {
            if (plotlyEmitted) return body;
            plotlyEmitted = true;
        }
        return $"<script type=\"text/javascript\" id=\"{PlotlyScriptId}\">{PlotlyJs()}</script>\n{body}";
    }

    /// <summary>A DataFrame as an HTML table: the first <see cref="MaxRows"/> rows, and a line saying how many were left out.</summary>
    public static string DataFrameHtml(DataFrame df)
    {
        var sb = new StringBuilder("<table class=\"attnlab-df\"><thead><tr>");
        foreach (var col in df.Columns) sb.Append("<th>").Append(WebUtility.HtmlEncode(col.Name)).Append("</th>");
        sb.Append("</tr></thead><tbody>");
        long shown = Math.Min(df.Rows.Count, MaxRows);
        for (long r = 0; r < shown; r++)
        {
            sb.Append("<tr>");
            foreach (var col in df.Columns) sb.Append("<td>").Append(WebUtility.HtmlEncode(FormatCell(col[r]))).Append("</td>");
            sb.Append("</tr>");
        }
        sb.Append("</tbody></table>");
        if (df.Rows.Count > shown)
            sb.Append($"<p><i>{shown} of {df.Rows.Count} rows shown ({df.Rows.Count - shown} more).</i></p>");
        return sb.ToString();
    }

    /// <summary>Numbers with 4 significant digits; everything else as text.</summary>
    public static string FormatCell(object? value) => value switch
    {
        null => "",
        double d => d.ToString("G4", System.Globalization.CultureInfo.InvariantCulture),
        float f => f.ToString("G4", System.Globalization.CultureInfo.InvariantCulture),
        IFormattable x => x.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}
