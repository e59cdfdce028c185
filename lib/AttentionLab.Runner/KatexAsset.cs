namespace AttentionLab.Runner;

/// <summary>
/// KaTeX (the npm package pinned by environment/gallery/package-lock.json; run.sh installs it with <c>npm ci</c>) copied beside
/// the HTML pages into <c>katex/</c>: the script, its auto-render extension, the style sheet and its woff2 fonts. Never a CDN;
/// nothing is downloaded when a page is opened. Without the package the pages still load and show the TeX source.
/// </summary>
public static class KatexAsset
{
    public const string Folder = "katex";
    public const string Script = "katex.min.js";
    public const string AutoRender = "contrib/auto-render.min.js";
    public const string StyleSheet = "katex.min.css";

    /// <summary>Where run.sh's <c>npm ci</c> puts the package's dist folder, relative to the repository root.</summary>
    public static readonly string DistInRepo = Path.Combine("environment", "gallery", "node_modules", "katex", "dist");

    static readonly object gate = new();

    /// <summary>The dist folder under <paramref name="repoRoot"/> when it holds the files the pages load, else null.</summary>
    public static string? FindDist(string repoRoot)
    {
        string dist = Path.Combine(repoRoot, DistInRepo);
        return new[] { Script, AutoRender, StyleSheet }.All(f => File.Exists(Path.Combine(dist, f))) ? dist : null;
    }

    /// <summary>
    /// Copies KaTeX from <paramref name="dist"/> into <c><paramref name="pagesFolder"/>/katex/</c> (files already identical are
    /// left alone); returns the number of files copied.
    /// </summary>
    public static int EnsureWritten(string pagesFolder, string dist)
    {
        ArgumentException.ThrowIfNullOrEmpty(pagesFolder);
        if (!File.Exists(Path.Combine(dist, Script)))
            throw new ArgumentException($"'{dist}' holds no {Script} (run.sh installs KaTeX with npm ci in environment/gallery).", nameof(dist));
        var files = new[] { Script, AutoRender, StyleSheet }
            .Concat(Directory.EnumerateFiles(Path.Combine(dist, "fonts"), "*.woff2").Select(f => Path.GetRelativePath(dist, f)));
        int copied = 0;
        lock (gate)
        {
            foreach (var relative in files)
            {
                string from = Path.Combine(dist, relative), to = Path.Combine(pagesFolder, Folder, relative);
                if (File.Exists(to) && new FileInfo(to).Length == new FileInfo(from).Length &&
                    File.ReadAllBytes(to).AsSpan().SequenceEqual(File.ReadAllBytes(from))) continue;
                Directory.CreateDirectory(Path.GetDirectoryName(to)!);
                File.Copy(from, to + ".tmp", overwrite: true);
                File.Move(to + ".tmp", to, overwrite: true);
                copied++;
            }
        }
        return copied;
    }

    /// <summary>
    /// The &lt;head&gt; lines of a page: KaTeX's style sheet and scripts (deferred), and the call that typesets
    /// <c>\( … \)</c>, <c>\[ … \]</c> (what Markdig's math extension makes of <c>$…$</c> and <c>$$…$$</c>) and any <c>$…$</c>,
    /// <c>$$…$$</c> left in markdown cells and outputs. Code and preformatted text are never touched (auto-render skips
    /// pre/code/script).
    /// </summary>
    public static string HeadHtml(string prefix = "") =>
        $"<link rel=\"stylesheet\" href=\"{prefix}{Folder}/{StyleSheet}\">\n" +
        $"<script defer src=\"{prefix}{Folder}/{Script}\"></script>\n" +
        $"<script defer src=\"{prefix}{Folder}/{AutoRender}\" onload=\"attnlabTypeset()\"></script>\n" +
        """
        <script>
        function attnlabTypeset() {
          var options = { throwOnError: false, delimiters: [
            { left: "$$", right: "$$", display: true }, { left: "\\[", right: "\\]", display: true },
            { left: "\\(", right: "\\)", display: false }, { left: "$", right: "$", display: false } ] };
          var run = function () {
            document.querySelectorAll(".markdown, .output").forEach(function (el) { renderMathInElement(el, options); });
            document.documentElement.setAttribute("data-math", "typeset");
          };
          if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run); else run();
        }
        </script>

        """;
}
