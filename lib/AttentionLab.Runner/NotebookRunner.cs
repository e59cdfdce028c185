using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace AttentionLab.Runner;

/// <summary>
/// Runs one notebook in its own kernel: code cells in order, stopping at the first failure or timeout, then writes
/// <c>&lt;out&gt;/notebooks/&lt;name&gt;.ipynb</c> (with outputs) and <c>&lt;name&gt;.html</c>. Never writes beside the notebook.
/// </summary>
public sealed partial class NotebookRunner(RunOptions options, Action<string>? log = null)
{
    static readonly JsonSerializerOptions IpynbJson = new()
    {
        WriteIndented = true,
        IndentSize = 1,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public RunOptions Options => options;

    public async Task<NotebookResult> RunAsync(string notebookPath, CancellationToken cancel = default)
    {
        options.Validate();
        notebookPath = Path.GetFullPath(notebookPath);
        string name = Path.GetFileNameWithoutExtension(notebookPath);
        string outNotebooks = Path.Combine(options.OutDir, "notebooks");
        if (RepoLocator.IsInside(options.OutDir, Path.GetDirectoryName(notebookPath)!))
            throw new ArgumentException($"the output folder '{options.OutDir}' is inside the notebooks folder; the runner never writes there.");
        Directory.CreateDirectory(outNotebooks);
        PlotlyAsset.EnsureWritten(outNotebooks);

        var startedAt = DateTimeOffset.Now;
        var clock = Stopwatch.StartNew();
        void Log(string message) => log?.Invoke($"[{name}] {message}");
        Log("started");

        NotebookFile notebook;
        try
        {
            notebook = NotebookFile.Load(notebookPath);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            var bad = Result(name, startedAt, clock, "unknown", $"cannot read the notebook: {e.Message}", null, []);
            File.WriteAllText(Path.Combine(outNotebooks, name + ".html"), HtmlPage.RenderUnreadable(bad));
            Log($"failed in {bad.Seconds:0.0} s: {bad.OneLineError(200)}");
            return bad with { HtmlPath = Path.Combine(outNotebooks, name + ".html") };
        }

        string claimsFile = ClaimsBoard.PathFor(options.OutDir, name);
        if (File.Exists(claimsFile)) File.Delete(claimsFile);                       // never show an earlier run's claims
        var executed = notebook.CreateExecutedCopy();
        var collector = new OutputCollector();
        var (error, failedCell, ran) = await ExecuteAsync(notebook, executed, collector, Log, KernelEnvironment(claimsFile), cancel);

        string device = DeviceLine().Match(collector.Stdout) is { Success: true } m ? m.Groups[1].Value : FallbackDevice();
        var result = Result(name, startedAt, clock, device, error, failedCell, ran) with
        {
            IpynbPath = Path.Combine(outNotebooks, name + ".ipynb"),
            HtmlPath = Path.Combine(outNotebooks, name + ".html"),
            ClaimsPath = File.Exists(claimsFile) ? claimsFile : null,
        };
        File.WriteAllText(result.IpynbPath, executed.ToJsonString(IpynbJson) + "\n");
        File.WriteAllText(result.HtmlPath, HtmlPage.Render(notebook, executed, result));
        Log(result.Passed ? $"passed in {result.Seconds:0.0} s" : $"failed in {result.Seconds:0.0} s: {result.OneLineError(200)}");
        return result;
    }

    async Task<(string? Error, int? FailedCell, List<int> Ran)> ExecuteAsync(NotebookFile notebook, JsonObject executed,
        OutputCollector collector, Action<string> log, Dictionary<string, string?> environment, CancellationToken cancel)
    {
        var cellsJson = (JsonArray)executed["cells"]!;
        var code = notebook.Cells.Where(c => c.Kind == CellKind.Code && c.Source.Trim().Length > 0).ToList();
        var ran = new List<int>();
        using var notebookCts = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        notebookCts.CancelAfter(options.NotebookTimeout);
        KernelSession? kernel = null;
        NotebookCell? cell = null;
        var cellClock = new Stopwatch();
        try
        {
            for (int i = 0; i < code.Count; i++)
            {
                cell = code[i];
                var cellJson = (JsonObject)cellsJson[cell.Number - 1]!;
                if (!cell.IsCSharp)
                {
                    string message = $"cell {cell.Number}: kernel '{cell.KernelName}' is not supported; the runner runs C# cells only.";
                    collector.BeginCell(cellJson);
                    collector.AddError(message);
                    return (message, cell.Number, ran);
                }
                cellClock.Restart();
                if (kernel is null)
                {
                    using var startCts = CancellationTokenSource.CreateLinkedTokenSource(notebookCts.Token);
                    startCts.CancelAfter(options.StartTimeout);
                    try
                    {
                        kernel = await KernelSession.StartAsync(options.RepoRoot, Path.GetDirectoryName(notebook.Path)!, environment, startCts.Token);
                    }
                    catch (OperationCanceledException) when (!notebookCts.IsCancellationRequested)
                    {
                        return ($"the kernel did not become ready within {options.StartTimeout.TotalSeconds:0} s", cell.Number, ran);
                    }
                    log($"kernel ready in {cellClock.Elapsed.TotalSeconds:0.0} s");
                    cellClock.Restart();
                }
                log($"cell {cell.Number} ({i + 1}/{code.Count})");
                using var cellCts = CancellationTokenSource.CreateLinkedTokenSource(notebookCts.Token);
                cellCts.CancelAfter(options.CellTimeout);
                collector.BeginCell(cellJson);
                ran.Add(cell.Number);
                var end = await kernel.SubmitCodeAsync($"cell-{cell.Number}", cell.Source, collector.Add, cellCts.Token);
                if (end.EventType == "CommandFailed")
                {
                    string message = end.Body["message"]?.GetValue<string>() ?? "CommandFailed without a message";
                    collector.AddError(message);
                    return ($"cell {cell.Number}: {ErrorText.FirstLines(message)}", cell.Number, ran);
                }
            }
            return (null, null, ran);
        }
        catch (OperationCanceledException) when (cell is not null)
        {
            double s = cellClock.Elapsed.TotalSeconds; // how long the cell had run (for a notebook timeout)
            kernel?.Dispose();
            kernel = null;
            string why = cancel.IsCancellationRequested ? $"cancelled in cell {cell.Number}"
                : notebookCts.IsCancellationRequested
                    ? $"timed out in cell {cell.Number} after {s:0} s (notebook timeout {options.NotebookTimeout.TotalSeconds:0} s)"
                : $"timed out in cell {cell.Number} after {options.CellTimeout.TotalSeconds:0} s (cell timeout)";
            if (ran.Contains(cell.Number)) collector.AddError($"TimeoutError: {why}; the kernel was killed.");
            return (why, cell.Number, ran);
        }
        catch (KernelExitedException e) when (cell is not null)
        {
            if (ran.Contains(cell.Number)) collector.AddError($"KernelExited: {e.Message}");
            return ($"cell {cell.Number}: {e.Message}", cell.Number, ran);
        }
        finally
        {
            kernel?.Dispose();
        }
    }

    /// <summary>The kernel's environment: the run size, where the check cell writes its claims, and the caller's extras.</summary>
    Dictionary<string, string?> KernelEnvironment(string claimsFile)
    {
        var env = new Dictionary<string, string?> { ["ATTNLAB_SIZE"] = options.Size, [ClaimsFileVariable] = claimsFile };
        foreach (var (k, v) in options.Environment) env[k] = v;
        return env;
    }

    string FallbackDevice() =>
        (options.Environment.TryGetValue("ATTNLAB_DEVICE", out var d) ? d : Environment.GetEnvironmentVariable("ATTNLAB_DEVICE"))
        is { Length: > 0 } device ? device : "unknown";

    NotebookResult Result(string name, DateTimeOffset startedAt, Stopwatch clock, string device, string? error, int? failedCell, List<int> ran) =>
        new()
        {
            Notebook = name,
            Passed = error is null,
            Seconds = Math.Round(clock.Elapsed.TotalSeconds, 1),
            Device = device,
            Size = options.Size,
            Error = error,
            FailedCell = failedCell,
            StartedAt = startedAt,
            CellsRun = ran,
        };

    /// <summary>The variable AttentionLab.Core.ClaimSet.Check reads to write the notebook's claims for the scoreboard.</summary>
    public const string ClaimsFileVariable = "ATTNLAB_CLAIMS_FILE";

    /// <summary>The library's setup line: "device cpu · threads 1 · seed 0 · size smoke".</summary>
    [GeneratedRegex(@"device (\S+) ·")]
    private static partial Regex DeviceLine();
}
