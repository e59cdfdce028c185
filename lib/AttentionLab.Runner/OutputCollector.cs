using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace AttentionLab.Runner;

/// <summary>
/// Turns kernel events into Jupyter outputs on the executed notebook's cells, and keeps the notebook's stdout.
/// DisplayedValueUpdated replaces the output with the same valueId, wherever it is. dotnet-interactive 1.0.712001's
/// C# <c>display(x).Update(y)</c> sends its first update under a new id; such an update takes over the latest
/// display in the current cell that has the same mime types and has not been updated yet, else it is appended.
/// </summary>
public sealed partial class OutputCollector
{
    readonly Dictionary<string, JsonObject> byValueId = new();
    readonly HashSet<JsonObject> updated = new(ReferenceEqualityComparer.Instance);
    readonly StringBuilder stdout = new();
    JsonArray current = [];
    int executionCount;

    /// <summary>Everything the notebook wrote to stdout so far.</summary>
    public string Stdout => stdout.ToString();

    /// <summary>Directs later events at <paramref name="cell"/> (an ipynb code cell) and numbers its execution.</summary>
    public void BeginCell(JsonObject cell)
    {
        current = new JsonArray();
        cell["outputs"] = current;
        cell["execution_count"] = ++executionCount;
    }

    public void Add(KernelEvent e)
    {
        switch (e.EventType)
        {
            case "StandardOutputValueProduced": AddStream("stdout", PlainText(e.Body)); break;
            case "StandardErrorValueProduced": AddStream("stderr", PlainText(e.Body)); break;
            case "ErrorProduced": AddStream("stderr", e.Body["message"]?.GetValue<string>() ?? PlainText(e.Body)); break;
            case "ReturnValueProduced": AddData("execute_result", e.Body); break;
            case "DisplayedValueProduced": AddData("display_data", e.Body); break;
            case "DisplayedValueUpdated": Update(e.Body); break;
        }
    }

    /// <summary>Adds an error output built from a CommandFailed message (or a runner message).</summary>
    public void AddError(string message)
    {
        var lines = message.Replace("\r\n", "\n").Split('\n');
        var m = ExceptionName().Match(lines[0]);
        current.Add(new JsonObject
        {
            ["output_type"] = "error",
            ["ename"] = m.Success ? m.Groups[1].Value : "Error",
            ["evalue"] = m.Success ? lines[0][(m.Length)..].Trim() : lines[0],
            ["traceback"] = new JsonArray(lines.Select(l => (JsonNode?)JsonValue.Create(l)).ToArray()),
        });
    }

    void AddStream(string name, string text)
    {
        if (text.Length == 0) return;
        if (name == "stdout") stdout.Append(text);
        if (current.Count > 0 && current[^1] is JsonObject last && (string?)last["output_type"] == "stream" && (string?)last["name"] == name)
        {
            last["text"] = (string?)last["text"] + text;
            return;
        }
        current.Add(new JsonObject { ["output_type"] = "stream", ["name"] = name, ["text"] = text });
    }

    void AddData(string outputType, JsonObject body)
    {
        var data = Data(body);
        if (data.Count == 0) return;
        var output = new JsonObject { ["output_type"] = outputType, ["data"] = data, ["metadata"] = new JsonObject() };
        if (outputType == "execute_result") output["execution_count"] = executionCount;
        current.Add(output);
        if (body["valueId"]?.GetValue<string>() is { } id) byValueId[id] = output;
    }

    void Update(JsonObject body)
    {
        var data = Data(body);
        string? id = body["valueId"]?.GetValue<string>();
        if (data.Count == 0 || id is null) return;
        if (!byValueId.TryGetValue(id, out var target))
        {
            var keys = string.Join(',', data.Select(p => p.Key));
            target = current.OfType<JsonObject>().LastOrDefault(o => (string?)o["output_type"] == "display_data"
                && !updated.Contains(o) && string.Join(',', ((JsonObject)o["data"]!).Select(p => p.Key)) == keys);
            if (target is null)
            {
                AddData("display_data", body);
                return;
            }
            byValueId[id] = target;
        }
        target["data"] = data;
        updated.Add(target);
    }

    static JsonObject Data(JsonObject body)
    {
        var data = new JsonObject();
        if (body["formattedValues"] is not JsonArray values) return data;
        foreach (var v in values.OfType<JsonObject>())
        {
            if (v["suppressDisplay"]?.GetValue<bool>() == true) continue;
            if (v["mimeType"]?.GetValue<string>() is { } mime) data[mime] = v["value"]?.GetValue<string>() ?? "";
        }
        return data;
    }

    static string PlainText(JsonObject body) =>
        (body["formattedValues"] as JsonArray)?.OfType<JsonObject>()
            .FirstOrDefault(v => (string?)v["mimeType"] == "text/plain")?["value"]?.GetValue<string>() ?? "";

    [GeneratedRegex(@"^([A-Za-z_][\w.`]*(?:Exception|Error)):")]
    private static partial Regex ExceptionName();
}
