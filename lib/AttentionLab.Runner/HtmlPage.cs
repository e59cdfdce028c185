using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Markdig;
using Markdig.Extensions.Mathematics;
using Markdig.Renderers;
using Markdig.Renderers.Html;

namespace AttentionLab.Runner;

/// <summary>
/// One executed notebook as a readable HTML page. Self-contained except for plotly.js and KaTeX: the inline copy of plotly.js
/// the library puts in its first chart (<c>&lt;script id="attnlab-plotlyjs"&gt;</c>) is stripped and the page loads the local
/// <see cref="PlotlyAsset.FileName"/> beside it instead; formulas are typeset by the local copy in <c>katex/</c> (<see cref="KatexAsset"/>).
/// </summary>
public static partial class HtmlPage
{
    public const string PlotlyScriptId = "attnlab-plotlyjs";

    static readonly MarkdownPipeline Pipeline = new MarkdownPipelineBuilder().UseAdvancedExtensions().Build();

    /// <summary>The page for a notebook that ran (passed or failed).</summary>
    public static string Render(NotebookFile notebook, JsonObject executed, NotebookResult result)
    {
        var sb = new StringBuilder();
        Head(sb, result);
        var cells = (JsonArray)executed["cells"]!;
        foreach (var cell in notebook.Cells)
        {
            var json = cells[cell.Number - 1] as JsonObject;
            switch (cell.Kind)
            {
                case CellKind.Markdown:
                    sb.Append($"<section class=\"cell markdown\" id=\"cell-{cell.Number}\">\n")
                      .Append(Markdown(cell.Source)).Append("</section>\n");
                    break;
                case CellKind.Raw:
                    sb.Append($"<section class=\"cell raw\" id=\"cell-{cell.Number}\"><pre>{E(cell.Source)}</pre></section>\n");
                    break;
                default:
                    Code(sb, cell, json, result);
                    break;
            }
        }
        sb.Append("</main>\n</body>\n</html>\n");
        return sb.ToString();
    }

    /// <summary>The page for a notebook that could not even be parsed.</summary>
    public static string RenderUnreadable(NotebookResult result)
    {
        var sb = new StringBuilder();
        Head(sb, result);
        return sb.Append("</main>\n</body>\n</html>\n").ToString();
    }

    /// <summary>Removes the inline plotly.js script element(s) from an HTML output.</summary>
    public static string StripInlinePlotly(string html) => InlinePlotly().Replace(html, "");

    static void Head(StringBuilder sb, NotebookResult r)
    {
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
          .Append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
          .Append($"<title>{E(r.Notebook)} · AttentionLab</title>\n")
          .Append($"<script src=\"{PlotlyAsset.FileName}\"></script>\n")
          .Append(KatexAsset.HeadHtml())
          .Append("<style>\n").Append(Css).Append("</style>\n</head>\n<body>\n<header>\n")
          .Append("<p><a href=\"../gallery/index.html\">← gallery</a></p>\n")
          .Append($"<h1>{E(r.Notebook)}</h1>\n")
          .Append($"<p class=\"meta\"><span class=\"badge {r.Status}\">{r.Status}</span> {r.Seconds:0.0} s · device {E(r.Device)} · size {E(r.Size)} · run " +
              $"{r.StartedAt:yyyy-MM-dd HH:mm zzz}</p>\n");
        if (r.Error is not null)
        {
            string where = r.FailedCell is { } n ? $"<a href=\"#cell-{n}\">cell {n}</a>" : "notebook";
            sb.Append($"<div class=\"error-box\"><div class=\"error-title\">Failed: {where}</div><pre>{E(r.Error)}</pre></div>\n");
        }
        sb.Append("</header>\n<main>\n");
    }

    static void Code(StringBuilder sb, NotebookCell cell, JsonObject? json, NotebookResult result)
    {
        bool ran = result.CellsRun.Contains(cell.Number);
        bool isFailed = result.FailedCell == cell.Number;
        string cls = isFailed ? " failed" : ran || cell.Source.Trim().Length == 0 ? "" : " not-run";
        sb.Append($"<section class=\"cell code{cls}\" id=\"cell-{cell.Number}\">\n")
          .Append($"<div class=\"prompt\">cell {cell.Number}{(cell.IsCSharp ? "" : $" · {E(cell.KernelName)}")}</div>\n")
          .Append($"<pre class=\"source\"><code class=\"language-csharp\">{E(cell.Source)}</code></pre>\n");
        if (json?["outputs"] is JsonArray outputs && outputs.Count > 0)
        {
            sb.Append("<div class=\"outputs\">\n");
            foreach (var o in outputs.OfType<JsonObject>()) Output(sb, o, cell.Number);
            sb.Append("</div>\n");
        }
        else if (!ran && cls == " not-run")
            sb.Append("<div class=\"note\">not run</div>\n");
        sb.Append("</section>\n");
    }

    static void Output(StringBuilder sb, JsonObject o, int cellNumber)
    {
        switch ((string?)o["output_type"])
        {
            case "stream":
                string name = (string?)o["name"] == "stderr" ? "stderr" : "stdout";
                sb.Append($"<pre class=\"stream {name}\">{E(NotebookFile.JoinSource(o["text"]))}</pre>\n");
                break;
            case "error":
                string trace = string.Join('\n', (o["traceback"] as JsonArray ?? []).Select(l => l?.GetValue<string>() ?? ""));
                sb.Append($"<div class=\"error-box\"><div class=\"error-title\">Error in cell {cellNumber}</div><pre>{E(trace)}</pre></div>\n");
                break;
            case "display_data" or "execute_result":
                if (o["data"] is JsonObject data) sb.Append("<div class=\"output\">").Append(Data(data)).Append("</div>\n");
                break;
        }
    }

    static string Data(JsonObject data)
    {
        string? Get(string mime) => data[mime] is { } v ? NotebookFile.JoinSource(v) : null;
        if (Get("text/html") is { } html) return StripInlinePlotly(html);
        if (Get("image/svg+xml") is { } svg) return svg;
        if (Get("image/png") is { } png) return $"<img alt=\"image\" src=\"data:image/png;base64,{E(png.Trim())}\">";
        if (Get("image/jpeg") is { } jpeg) return $"<img alt=\"image\" src=\"data:image/jpeg;base64,{E(jpeg.Trim())}\">";
        if (Get("text/markdown") is { } md) return Markdown(md);
        if (Get("text/plain") is { } text) return $"<pre>{E(text)}</pre>";
        var first = data.FirstOrDefault();
        return first.Value is null ? "" : $"<pre>{E(NotebookFile.JoinSource(first.Value))}</pre>";
    }

    /// <summary>
    /// Markdown to HTML with the math extension; <c>$$…$$</c> inside a paragraph (how the notebooks write display formulas, as
    /// Jupyter shows them) becomes display math <c>\[…\]</c>, where Markdig alone would make it inline <c>\(…\)</c>.
    /// </summary>
    public static string Markdown(string markdown)
    {
        var writer = new StringWriter();
        var renderer = new HtmlRenderer(writer);
        Pipeline.Setup(renderer);
        renderer.ObjectRenderers.Replace<HtmlMathInlineRenderer>(new DisplayAwareMathInlineRenderer());
        renderer.Render(Markdig.Markdown.Parse(markdown, Pipeline));
        writer.Flush();
        return writer.ToString();
    }

    sealed class DisplayAwareMathInlineRenderer : HtmlObjectRenderer<MathInline>
    {
        protected override void Write(HtmlRenderer renderer, MathInline math)
        {
            bool display = math.DelimiterCount >= 2;
            renderer.Write(display ? "<span class=\"math display\">\\[" : "<span class=\"math\">\\(");
            renderer.WriteEscape(math.Content.ToString());
            renderer.Write(display ? "\\]</span>" : "\\)</span>");
        }
    }

    /// <summary>Escapes &amp; &lt; &gt; " and ' (the page is UTF-8, so other characters stay readable).</summary>
    public static string E(string text) => text.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;")
        .Replace("\"", "&quot;").Replace("'", "&#39;");

    [GeneratedRegex("""<script\b[^>]*\bid\s*=\s*["']?attnlab-plotlyjs["']?[^>]*>.*?</script\s*>""", RegexOptions.Singleline | RegexOptions.IgnoreCase)]
    private static partial Regex InlinePlotly();

    const string Css = """
        body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; line-height: 1.5; color: #1f2328; margin: 0; }
        header, main { max-width: 1040px; margin: 0 auto; padding: 0 1.5rem; }
        header { padding-top: 1rem; border-bottom: 1px solid #d0d7de; margin-bottom: 1rem; }
        h1 { margin: .2rem 0; }
        a { color: #0969da; }
        .meta { color: #57606a; }
        .badge { display: inline-block; padding: 0 .5rem; border-radius: 1rem; color: #fff; font-weight: 600; }
        .badge.passed { background: #1a7f37; } .badge.failed { background: #cf222e; }
        .cell { margin: 1rem 0; }
        .prompt { color: #8c959f; font-size: .8rem; }
        pre { overflow-x: auto; padding: .6rem .8rem; border-radius: 6px; font-size: .85rem; }
        pre.source { background: #f6f8fa; border: 1px solid #d0d7de; }
        .outputs { border-left: 3px solid #d0d7de; padding-left: .8rem; margin-top: .3rem; overflow-x: auto; }
        .output pre, pre.stream { background: #fff; margin: .3rem 0; padding: .2rem 0; }
        pre.stderr { color: #9a6700; }
        .error-box { border: 1px solid #cf222e; background: #ffebe9; border-radius: 6px; padding: .5rem .8rem; margin: .5rem 0; }
        .error-box pre { color: #82071e; margin: .3rem 0 0; padding: 0; white-space: pre-wrap; }
        .error-title { color: #cf222e; font-weight: 600; }
        .cell.failed pre.source { border-color: #cf222e; }
        .cell.not-run { opacity: .55; }
        .note { color: #8c959f; font-style: italic; font-size: .85rem; }
        table { border-collapse: collapse; } th, td { padding: .2rem .6rem; border-bottom: 1px solid #d0d7de; text-align: left; }
        .markdown img { max-width: 100%; }

        """;
}
