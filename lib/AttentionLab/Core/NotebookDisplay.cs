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
            Formatter.Register<ClaimSet>((claims, writer) => writer.Write(ClaimsHtml(claims)), HtmlFormatter.MimeType);
            Formatter.Register<Findings>((findings, writer) => writer.Write(FindingsHtml(findings)), HtmlFormatter.MimeType);
            Formatter.SetPreferredMimeTypesFor(typeof(ClaimSet), HtmlFormatter.MimeType);
            Formatter.SetPreferredMimeTypesFor(typeof(Findings), HtmlFormatter.MimeType);
            registered = true;
        }
    }

    /// <summary>plotly.js as shipped inside Plotly.NET (2.28.0).</summary>
    public static string PlotlyJs()
    {
        var asm = typeof(GenericChart).Assembly;
        string name = asm.GetManifestResourceNames()
            .Single(n => n.StartsWith("Plotly.NET.plotly-", StringComparison.Ordinal) && n.EndsWith(".min.js", StringComparison.Ordinal));
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

    static readonly Dictionary<ClaimStatus, string> StatusColour = new()
    {
        [ClaimStatus.Holds] = "#1a7f37", [ClaimStatus.DoesNotHold] = "#cf222e", [ClaimStatus.NotShown] = "#6e7781",
    };

    /// <summary>The claims table: claim, kind, the paper's figure beside ours, criterion, status badge, asserted, deviation/note.</summary>
    public static string ClaimsHtml(ClaimSet claims)
    {
        static string E(string? s) => WebUtility.HtmlEncode(s ?? "");
        var sb = new StringBuilder($"<p><b>Paper {claims.Paper} — claims at size {E(claims.Size)}</b> ")
            .Append($"({claims.Count(c => c.Status == ClaimStatus.Holds)} hold, {claims.Count(c => c.Status == ClaimStatus.DoesNotHold)} do not hold, ")
            .Append($"{claims.Count(c => c.Status == ClaimStatus.NotShown)} not shown; {claims.Failures.Count} failing the check)</p>")
            .Append("<table class=\"attnlab-claims\"><thead><tr><th>claim</th><th>kind</th><th>statement</th><th>paper</th><th>ours</th>")
            .Append("<th>criterion</th><th>status</th><th>asserted</th><th>deviation / note</th></tr></thead><tbody>");
        foreach (var c in claims)
        {
            string badge = $"<span style=\"background:{StatusColour[c.Status]};color:#fff;border-radius:1em;padding:0 .5em;white-space:nowrap\">" +
                $"{E(ClaimRecord.StatusText(c.Status))}</span>";
            string note = string.Join("<br>",
                new[] { c.Deviation is null ? null : "<b>Deviation:</b> " + E(c.Deviation), c.Note is null ? null : E(c.Note) }.Where(x => x is not null));
            sb.Append($"<tr><td><code>{E(c.Id)}</code></td><td>{E(ClaimRecord.KindText(c.Kind))}</td><td>{E(c.Statement)}</td><td>{E(c.PaperFigure)}</td>")
              .Append($"<td>{E(c.Ours)}</td><td>{E(c.Criterion)}</td><td>{badge}</td><td>{(c.Asserted ? "yes" : "no")}</td><td>{note}</td></tr>");
        }
        return sb.Append("</tbody></table>").ToString();
    }

    /// <summary>The closing "what we saw" as an HTML list (every number in it comes from the run).</summary>
    public static string FindingsHtml(Findings findings)
    {
        var sb = new StringBuilder($"<p><b>What this run showed (paper {findings.Paper}, size {WebUtility.HtmlEncode(findings.Size)}):</b></p><ul>");
        foreach (var line in findings.Lines()) sb.Append("<li>").Append(WebUtility.HtmlEncode(line)).Append("</li>");
        return sb.Append("</ul>").ToString();
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
