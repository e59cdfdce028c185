using System.Text.Json.Nodes;
using Microsoft.DotNet.Interactive.Documents;
using Microsoft.DotNet.Interactive.Documents.Jupyter;

namespace AttentionLab.Runner;

public enum CellKind { Markdown, Code, Raw }

/// <summary>One cell; <see cref="Number"/> is its 1-based position in the notebook (markdown cells count too).</summary>
public sealed record NotebookCell(int Number, CellKind Kind, string KernelName, string Source)
{
    /// <summary>C# cells, and code cells with no kernel name (the notebook's default is C#).</summary>
    public bool IsCSharp => Kind == CellKind.Code && KernelName is "" or "csharp" or "c#" or "C#";
}

/// <summary>A parsed .ipynb or .dib notebook (via Microsoft.DotNet.Interactive.Documents) plus its Jupyter JSON.</summary>
public sealed class NotebookFile
{
    NotebookFile(string path, IReadOnlyList<NotebookCell> cells, JsonObject json)
    {
        Path = path;
        Cells = cells;
        this.json = json;
    }

    readonly JsonObject json;

    public string Path { get; }
    /// <summary>The file name without its extension; names the output files.</summary>
    public string Name => System.IO.Path.GetFileNameWithoutExtension(Path);
    public IReadOnlyList<NotebookCell> Cells { get; }

    /// <summary>The kernels the documents parser should know (aliases and #! magics).</summary>
    public static KernelInfoCollection KernelInfos()
    {
        var k = new KernelInfoCollection
        {
            new KernelInfo("csharp", "C#", ["c#", "C#"]),
            new KernelInfo("fsharp", "F#", ["f#", "F#"]),
            new KernelInfo("pwsh", "PowerShell", ["powershell"]),
            new KernelInfo("javascript", "JavaScript", ["js"]),
            new KernelInfo("html", "HTML", []),
            new KernelInfo("markdown", "Markdown", ["md"]),
            new KernelInfo("mermaid", "Mermaid", []),
            new KernelInfo("sql", "SQL", []),
            new KernelInfo("kql", "KQL", []),
            new KernelInfo("http", "HTTP", []),
            new KernelInfo("value", "Value", []),
        };
        k.DefaultKernelName = "csharp";
        return k;
    }

    /// <summary>Reads a .ipynb or .dib file; throws InvalidDataException with the reason when it cannot.</summary>
    public static NotebookFile Load(string path)
    {
        string text = File.ReadAllText(path);
        bool dib = path.EndsWith(".dib", StringComparison.OrdinalIgnoreCase);
        InteractiveDocument doc;
        JsonObject json;
        try
        {
            doc = dib ? CodeSubmission.Parse(text, KernelInfos()) : Notebook.Parse(text, KernelInfos());
            json = JsonNode.Parse(dib ? Notebook.ToJupyterJson(doc, "csharp") : text) as JsonObject
                   ?? throw new InvalidDataException("the notebook JSON is not an object");
        }
        catch (Exception e) when (e is not InvalidDataException)
        {
            throw new InvalidDataException($"cannot parse {System.IO.Path.GetFileName(path)}: {e.Message}", e);
        }
        var jsonCells = json["cells"] as JsonArray ?? throw new InvalidDataException("the notebook has no \"cells\" array");
        if (jsonCells.Count != doc.Elements.Count)
            throw new InvalidDataException($"{jsonCells.Count} JSON cells but {doc.Elements.Count} parsed cells");

        var cells = new List<NotebookCell>(jsonCells.Count);
        for (int i = 0; i < jsonCells.Count; i++)
        {
            var element = doc.Elements[i];
            string type = jsonCells[i]?["cell_type"]?.GetValue<string>() ?? "code";
            var kind = type switch { "markdown" => CellKind.Markdown, "raw" => CellKind.Raw, _ => CellKind.Code };
            string kernel = element.KernelName ?? "";
            if (kind == CellKind.Code && kernel == "markdown") kind = CellKind.Markdown; // a .dib markdown cell
            string source = dib ? element.Contents : JoinSource(jsonCells[i]?["source"]);
            cells.Add(new NotebookCell(i + 1, kind, kernel, source));
        }
        return new NotebookFile(path, cells, json);
    }

    /// <summary>A fresh copy of the notebook's Jupyter JSON (metadata kept) with the code cells' outputs cleared.</summary>
    public JsonObject CreateExecutedCopy()
    {
        var copy = (JsonObject)json.DeepClone();
        foreach (var cell in (JsonArray)copy["cells"]!)
        {
            if (cell is JsonObject c && (string?)c["cell_type"] == "code")
            {
                c["outputs"] = new JsonArray();
                c["execution_count"] = null;
            }
        }
        return copy;
    }

    /// <summary>ipynb "source" is a string or a list of strings.</summary>
    public static string JoinSource(JsonNode? source) => source switch
    {
        null => "",
        JsonArray lines => string.Concat(lines.Select(l => l?.GetValue<string>() ?? "")),
        _ => source.GetValue<string>(),
    };
}
