using System.CommandLine;
using Spectre.Console;

namespace AttentionLab.Runner;

/// <summary>
/// The CLI: runs the notebooks headless, one kernel each, and writes executed copies, HTML pages, summary.csv and the
/// gallery. Ends with the line "N passed, N failed"; exits 1 when any notebook failed, 2 when none matched.
/// </summary>
public static class Program
{
    public static Task<int> Main(string[] args) => RunAsync(args, Console.Out, Console.Error);

    /// <summary>The whole CLI, with its output sent to <paramref name="output"/> (tests call this in-process).</summary>
    public static Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, CancellationToken cancel = default)
    {
        var size = new Option<string>("--size") { Description = "smoke (default) or full; passed to notebooks as ATTNLAB_SIZE",
            DefaultValueFactory = _ => RunOptions.Smoke };
        size.AcceptOnlyFromAmong(RunOptions.Smoke, RunOptions.Full);
        var filter = new Option<string?>("--filter") { Description = "run only notebooks whose file name contains this text" };
        var jobs = new Option<int>("--jobs", "-j") { Description = "kernels at once (each ~450 MB and CPU-bound)", DefaultValueFactory = _ => 1 };
        jobs.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 1) r.AddError("--jobs must be at least 1."); });
        var notebooks = new Option<DirectoryInfo?>("--notebooks") { Description = "the notebooks folder [default: <repo>/notebooks]" };
        var outDir = new Option<DirectoryInfo?>("--out") { Description = "the output folder [default: <repo>/artifacts]" };
        var repoRoot = new Option<DirectoryInfo?>("--repo-root") { Description = "the repository root [default: the folder above holding Notebooks.sln]" };
        var cellTimeout = new Option<int>("--cell-timeout") { Description = "seconds one cell may run before the kernel is killed",
            DefaultValueFactory = _ => 600 };
        var notebookTimeout = new Option<int>("--notebook-timeout") { Description = "seconds one notebook may run (kernel start included)",
            DefaultValueFactory = _ => 1200 };
        var shard = new Option<string?>("--shard") { Description = "run only shard I of N (I/N, e.g. 2/4): every N-th notebook of the sorted list; " +
            "merge the shards' --out folders with the merge command" };
        foreach (var o in new[] { cellTimeout, notebookTimeout })
            o.Validators.Add(r => { if (r.GetValueOrDefault<int>() < 1) r.AddError($"{r.Option.Name} must be at least 1 second."); });

        var root = new RootCommand("Runs AttentionLab's notebooks headless in the pinned dotnet-interactive kernel and publishes an HTML gallery.")
        {
            size, filter, jobs, notebooks, outDir, repoRoot, cellTimeout, notebookTimeout, shard,
        };
        var shardDirs = new Argument<DirectoryInfo[]>("shards") { Description = "the shards' output folders (each with run.json)",
            Arity = ArgumentArity.OneOrMore };
        var mergeSize = new Option<string>("--size") { Description = "the size the shards ran at", DefaultValueFactory = _ => RunOptions.Smoke };
        mergeSize.AcceptOnlyFromAmong(RunOptions.Smoke, RunOptions.Full);
        var mergeOut = new Option<DirectoryInfo?>("--out") { Description = "the merged output folder [default: <repo>/artifacts]" };
        var mergeRepo = new Option<DirectoryInfo?>("--repo-root") { Description = "the repository root [default: the folder above holding Notebooks.sln]" };
        var merge = new Command("merge", "Builds one gallery, summary.csv, scoreboard and history entry from the output folders of a sharded run.")
        {
            shardDirs, mergeSize, mergeOut, mergeRepo,
        };
        merge.SetAction(parse =>
        {
            string repo = parse.GetValue(mergeRepo)?.FullName ?? RepoLocator.Find();
            var options = new RunOptions
            {
                RepoRoot = repo,
                OutDir = parse.GetValue(mergeOut)?.FullName ?? Path.Combine(repo, "artifacts"),
                Size = parse.GetValue(mergeSize)!,
            };
            return MergeRuns(options, parse.GetValue(shardDirs)!.Select(d => d.FullName).ToList(), output, error);
        });
        root.Subcommands.Add(merge);
        root.SetAction(async (parse, token) =>
        {
            string repo = parse.GetValue(repoRoot)?.FullName ?? RepoLocator.Find();
            var options = new RunOptions
            {
                RepoRoot = repo,
                OutDir = parse.GetValue(outDir)?.FullName ?? Path.Combine(repo, "artifacts"),
                Size = parse.GetValue(size)!,
                CellTimeout = TimeSpan.FromSeconds(parse.GetValue(cellTimeout)),
                NotebookTimeout = TimeSpan.FromSeconds(parse.GetValue(notebookTimeout)),
            };
            string folder = parse.GetValue(notebooks)?.FullName ?? Path.Combine(repo, "notebooks");
            return await RunBatchAsync(options, folder, parse.GetValue(filter), parse.GetValue(jobs), parse.GetValue(shard), output, error, token);
        });
        return root.Parse(args).InvokeAsync(new InvocationConfiguration { Output = output, Error = error }, cancel);
    }

    /// <summary>The "changed since the previous run" lines, as the gallery index shows them.</summary>
    internal static IEnumerable<string> ChangeLines(BatchResult batch)
    {
        if (batch.ComparedWith.Count == 0)
        {
            yield return "Changed since the previous run: no earlier run of these notebooks in the history, nothing to compare.";
            yield break;
        }
        yield return $"Changed since the previous run ({string.Join(", ", batch.ComparedWith)}): " +
            (batch.Changes.Count == 0 ? "nothing (no new failure, no claim status change, nothing more than 1.5x slower)." : $"{batch.Changes.Count}");
        foreach (var c in batch.Changes) yield return $"  {(c.IsRegression ? "REGRESSION" : "change")}: {c.Text}";
    }

    /// <summary>"NN-slug" with NN a paper (01–50) or a cross-paper study (90+): notebooks that report claims.</summary>
    static bool IsPaperNotebook(string name) => name.Length > 3 && char.IsDigit(name[0]) && char.IsDigit(name[1]) && name[2] == '-' && name[..2] != "00";

    static int MergeRuns(RunOptions options, IReadOnlyList<string> shards, TextWriter output, TextWriter error)
    {
        BatchResult batch;
        try
        {
            batch = RunMerge.Merge(options, shards, line => output.WriteLine(line));
        }
        catch (ArgumentException e)
        {
            error.WriteLine($"error: {e.Message}");
            return 2;
        }
        Report(batch, options, output);
        return batch.Failed == 0 ? 0 : 1;
    }

    static async Task<int> RunBatchAsync(RunOptions options, string folder, string? filter, int jobs, string? shardText,
        TextWriter output, TextWriter error, CancellationToken cancel)
    {
        IReadOnlyList<string> found;
        ShardSpec? shard = null;
        try
        {
            options.Validate();
            if (RepoLocator.IsInside(options.OutDir, folder))
                throw new ArgumentException($"--out '{options.OutDir}' is inside the notebooks folder '{folder}'; the runner never writes there.");
            found = BatchRunner.FindNotebooks(folder, filter);
            if (shardText is not null)
            {
                shard = ShardSpec.Parse(shardText);
                found = shard.Select(found);
            }
        }
        catch (ArgumentException e)
        {
            error.WriteLine($"error: {e.Message}");
            return 2;
        }
        if (found.Count == 0)
        {
            error.WriteLine(Directory.Exists(folder)
                ? $"No notebooks (*.ipynb, *.dib) in {folder}{(string.IsNullOrEmpty(filter) ? "" : $" match --filter '{filter}'")}" +
                  (shard is null ? "." : $" in shard {shard} (more shards than notebooks?).")
                : $"The notebooks folder {folder} does not exist.");
            output.WriteLine("0 passed, 0 failed");
            return 2;
        }

        output.WriteLine($"Running {found.Count} notebook(s) from {folder} at size {options.Size}, {jobs} at a time" +
            (shard is null ? "" : $", shard {shard}") + $"; output in {options.OutDir}");
        var gate = new object();
        void Log(string line) { lock (gate) { output.WriteLine($"{DateTime.Now:HH:mm:ss} {line}"); output.Flush(); } }
        var batch = await new BatchRunner(options, jobs, Log, shard).RunAsync(found, cancel);
        foreach (var r in batch.Results.Where(r => r.Passed && r.ClaimsPath is null && IsPaperNotebook(r.Notebook)))
            Log($"[{r.Notebook}] note: passed without writing claims (its check cell should end with claims.Check())");
        Report(batch, options, output);
        return batch.Failed == 0 ? 0 : 1;
    }

    /// <summary>The table, the paths, the claim differences, the changes and the closing "N passed, N failed" line.</summary>
    static void Report(BatchResult batch, RunOptions options, TextWriter output)
    {

        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(output),
            Ansi = output == Console.Out ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = output == Console.Out ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
        });
        var table = new Table().AddColumns("notebook", "status", "seconds", "device", "error");
        foreach (var r in batch.Results)
            table.AddRow(Markup.Escape(r.Notebook), r.Passed ? "[green]passed[/]" : "[red]failed[/]",
                r.Seconds.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture), Markup.Escape(r.Device), Markup.Escape(r.OneLineError(100)));
        console.Write(table);
        output.WriteLine($"Summary: {batch.SummaryPath}");
        output.WriteLine($"Gallery: {batch.GalleryPath}");
        output.WriteLine($"Scoreboard: {batch.ScoreboardPath} ({batch.Claims.Count} claims; {Path.Combine(options.OutDir, ClaimsBoard.CsvName)})");
        if (batch.ClaimDifferences.Count > 0)
        {
            output.WriteLine($"{batch.ClaimDifferences.Count} claim status(es) differ from {options.ExpectedClaimsFile}:");
            foreach (var d in batch.ClaimDifferences) output.WriteLine($"  {d}");
        }
        output.WriteLine($"History: {batch.HistoryPath}");
        foreach (var line in ChangeLines(batch)) output.WriteLine(line);
        output.WriteLine($"{batch.Passed} passed, {batch.Failed} failed");
    }
}
