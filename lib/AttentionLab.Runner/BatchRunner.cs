namespace AttentionLab.Runner;

/// <summary>The results of one batch, in notebook-name order.</summary>
public sealed record BatchResult(IReadOnlyList<NotebookResult> Results, DateTimeOffset RunAt, string SummaryPath, string GalleryPath)
{
    /// <summary>The claims collected into claims.csv (this run's and earlier runs' still in the gallery).</summary>
    public IReadOnlyList<ClaimRow> Claims { get; init; } = [];
    /// <summary>The scoreboard page (gallery/claims.html).</summary>
    public string ScoreboardPath { get; init; } = "";
    /// <summary>This run's claims that differ from the expected-status file (empty when there is no file).</summary>
    public IReadOnlyList<string> ClaimDifferences { get; init; } = [];
    /// <summary>The run's metadata and its history folder (&lt;out&gt;/history/&lt;id&gt;).</summary>
    public RunMeta? Run { get; init; }
    public string HistoryPath { get; init; } = "";
    /// <summary>What changed since the previous run (regressions first; see <see cref="RunHistory.Diff"/>).</summary>
    public IReadOnlyList<RunChange> Changes { get; init; } = [];
    /// <summary>The history folders this run was compared with (empty: the first run).</summary>
    public IReadOnlyList<string> ComparedWith { get; init; } = [];

    public int Passed => Results.Count(r => r.Passed);
    public int Failed => Results.Count(r => !r.Passed);
}

/// <summary>
/// Runs several notebooks (up to <c>jobs</c> kernels at once), then writes summary.csv and the gallery. <c>shard</c> only labels
/// the output (run.json); the caller picks the shard's notebooks with <see cref="ShardSpec.Select"/>.
/// </summary>
public sealed class BatchRunner(RunOptions options, int jobs = 1, Action<string>? log = null, ShardSpec? shard = null)
{
    /// <summary>*.ipynb and *.dib files directly in <paramref name="folder"/> whose file name contains <paramref name="filter"/>, sorted.</summary>
    public static IReadOnlyList<string> FindNotebooks(string folder, string? filter = null)
    {
        if (!Directory.Exists(folder)) return [];
        var found = Directory.EnumerateFiles(folder)
            .Where(p => p.EndsWith(".ipynb", StringComparison.OrdinalIgnoreCase) || p.EndsWith(".dib", StringComparison.OrdinalIgnoreCase))
            .Where(p => string.IsNullOrEmpty(filter) || Path.GetFileName(p).Contains(filter, StringComparison.OrdinalIgnoreCase))
            .Order(StringComparer.Ordinal)
            .ToList();
        var twice = found.GroupBy(Path.GetFileNameWithoutExtension).FirstOrDefault(g => g.Count() > 1);
        if (twice is not null)
            throw new ArgumentException($"two notebooks would write the same pages: {string.Join(" and ", twice.Select(Path.GetFileName))}.");
        return found;
    }

    public async Task<BatchResult> RunAsync(IReadOnlyList<string> notebooks, CancellationToken cancel = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(jobs, 1);
        options.Validate();
        var runAt = DateTimeOffset.Now;
        PlotlyAsset.EnsureWritten(Path.Combine(options.OutDir, "notebooks"));
        if (KatexAsset.FindDist(options.RepoRoot) is { } katex) KatexAsset.EnsureWritten(Path.Combine(options.OutDir, "notebooks"), katex);
        else log?.Invoke($"warning: KaTeX is not installed ({KatexAsset.DistInRepo}): formulas will show as TeX source. " +
            "run.sh installs it (npm ci in environment/gallery; needs Node.js and npm).");
        var runner = new NotebookRunner(options, log);
        var results = new NotebookResult?[notebooks.Count];
        await Parallel.ForEachAsync(Enumerable.Range(0, notebooks.Count),
            new ParallelOptions { MaxDegreeOfParallelism = jobs, CancellationToken = cancel },
            async (i, token) => results[i] = await runner.RunAsync(notebooks[i], token));
        var done = results.Select(r => r!).OrderBy(r => r.Notebook, StringComparer.Ordinal).ToList();
        return Publish(options, done, RunHistory.Describe(options.RepoRoot, runAt, options.Size), shard);
    }

    /// <summary>
    /// Writes everything a finished batch publishes: run.json, summary.csv, claims.csv and the scoreboard, the history entry,
    /// the changes since the previous run and the gallery index. Shared by a run and by <see cref="RunMerge"/>.
    /// </summary>
    internal static BatchResult Publish(RunOptions options, IReadOnlyList<NotebookResult> done, RunMeta run, ShardSpec? shard)
    {
        Directory.CreateDirectory(options.OutDir);
        RunManifest.Write(options.OutDir, new RunManifest(run, shard?.ToString(), done));
        string summary = SummaryCsv.Write(options.OutDir, done);
        var claims = ClaimsBoard.Collect(options.OutDir);
        var expected = options.ExpectedClaimsFile is { } path ? ExpectedClaims.TryLoad(path) : null;
        string scoreboard = ClaimsBoard.Write(options.OutDir, claims, expected);
        string history = RunHistory.Save(options.OutDir, run, done, claims);
        var changes = RunHistory.SincePrevious(options.OutDir, history, out var comparedWith);
        var context = Gallery.ContextFor(options.OutDir, options.RepoRoot, run, changes, comparedWith);
        string gallery = Gallery.Update(options.OutDir, done, run.RunAt, claims, context);
        var thisRun = claims.Where(c => done.Any(r => r.Notebook == c.Notebook)).ToList();
        var differences = expected?.Compare(thisRun, thisRun.Select(c => c.Paper).Distinct().ToList()) ?? [];
        return new BatchResult(done, run.RunAt, summary, gallery)
        {
            Claims = claims, ScoreboardPath = scoreboard, ClaimDifferences = differences, Run = run, HistoryPath = history,
            Changes = changes, ComparedWith = comparedWith,
        };
    }
}
