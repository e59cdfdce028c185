using System.Text.Json;

namespace AttentionLab.Runner;

/// <summary>
/// One part of a sharded run (<c>--shard I/N</c>, 1 ≤ I ≤ N): of the sorted notebook list, shard I takes the notebooks at
/// 0-based positions p with p mod N = I − 1, so N shards cover every notebook exactly once and a new notebook moves at most
/// the ones after it.
/// </summary>
public sealed record ShardSpec(int Index, int Count)
{
    /// <summary>"I/N" → the shard; ArgumentException naming --shard otherwise.</summary>
    public static ShardSpec Parse(string text)
    {
        var parts = (text ?? "").Split('/');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int i) || !int.TryParse(parts[1], out int n))
            throw new ArgumentException($"--shard must look like I/N (e.g. 2/4), got '{text}'.", "--shard");
        if (n < 1 || i < 1 || i > n)
            throw new ArgumentException($"--shard {text}: need 1 ≤ I ≤ N, got I = {i}, N = {n}.", "--shard");
        return new ShardSpec(i, n);
    }

    /// <summary>This shard's part of <paramref name="sorted"/> (in order).</summary>
    public IReadOnlyList<string> Select(IReadOnlyList<string> sorted) =>
        sorted.Where((_, p) => p % Count == Index - 1).ToList();

    public override string ToString() => $"{Index}/{Count}";
}

/// <summary>
/// <c>&lt;out&gt;/run.json</c>: what one batch ran (its metadata, shard and results), written by every run so that
/// <see cref="RunMerge"/> can build one gallery from several runner machines' output folders.
/// </summary>
public sealed record RunManifest(RunMeta Run, string? Shard, IReadOnlyList<NotebookResult> Results)
{
    public const string FileName = "run.json";
    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public static void Write(string outDir, RunManifest manifest) =>
        File.WriteAllText(Path.Combine(outDir, FileName), JsonSerializer.Serialize(manifest, Json));

    /// <summary>Reads <paramref name="outDir"/>/run.json; ArgumentException naming the folder when it is missing or unreadable.</summary>
    public static RunManifest Read(string outDir)
    {
        string path = Path.Combine(outDir, FileName);
        if (!File.Exists(path))
            throw new ArgumentException($"'{outDir}' is not a runner output folder: it has no {FileName} (run.sh writes one into --out).", nameof(outDir));
        try
        {
            return JsonSerializer.Deserialize<RunManifest>(File.ReadAllText(path)) ?? throw new JsonException("empty");
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"{path} is not a run manifest: {e.Message}", nameof(outDir), e);
        }
    }
}

/// <summary>
/// Merges the output folders of several runs (the shards of one nightly run) into one: the executed notebooks, pages and
/// claims files are copied, then summary.csv, the scoreboard, the history entry and the gallery index are written exactly
/// as one unsharded run writes them (<see cref="BatchRunner.Publish"/>). The shards must come from one commit at one size
/// and must not share a notebook.
/// </summary>
public static class RunMerge
{
    public static BatchResult Merge(RunOptions options, IReadOnlyList<string> shardDirs, Action<string>? log = null)
    {
        options.Validate();
        if (shardDirs.Count == 0) throw new ArgumentException("merge needs at least one shard output folder.", nameof(shardDirs));
        var manifests = shardDirs.Select(d => (Dir: Path.GetFullPath(d), Manifest: RunManifest.Read(d))).ToList();
        var commits = manifests.Select(m => m.Manifest.Run.Commit).Distinct().ToList();
        if (commits.Count > 1)
            throw new ArgumentException($"the shards come from different commits ({string.Join(", ", commits)}); merge runs of one commit.", nameof(shardDirs));
        var sizes = manifests.Select(m => m.Manifest.Run.Size).Distinct().ToList();
        if (sizes.Count > 1 || sizes[0] != options.Size)
            throw new ArgumentException($"the shards ran at size {string.Join(", ", sizes)}, the merge is at {options.Size}; use --size to match.",
                nameof(shardDirs));
        var twice = manifests.SelectMany(m => m.Manifest.Results.Select(r => (r.Notebook, m.Dir))).GroupBy(x => x.Notebook).FirstOrDefault(g => g.Count() > 1);
        if (twice is not null)
            throw new ArgumentException($"{twice.Key} is in more than one shard ({string.Join(", ", twice.Select(x => x.Dir))}).", nameof(shardDirs));
        if (manifests.Any(m => RepoLocator.IsInside(options.OutDir, m.Dir) || RepoLocator.IsInside(m.Dir, options.OutDir)))
            throw new ArgumentException($"--out '{options.OutDir}' must be outside every shard folder (and not hold one).", nameof(options));

        string notebooksOut = Path.Combine(options.OutDir, "notebooks");
        string claimsOut = Path.Combine(options.OutDir, ClaimsBoard.Folder);
        Directory.CreateDirectory(notebooksOut);
        Directory.CreateDirectory(claimsOut);
        var results = new List<NotebookResult>();
        foreach (var (dir, manifest) in manifests)
        {
            log?.Invoke($"merging {manifest.Results.Count} notebook(s) of shard {manifest.Shard ?? "(unsharded)"} from {dir}");
            CopyFolder(Path.Combine(dir, "notebooks"), notebooksOut);            // pages, executed copies, shared assets (identical)
            foreach (var r in manifest.Results)
            {
                string? claims = null;
                if (r.ClaimsPath is not null && File.Exists(ClaimsBoard.PathFor(dir, r.Notebook)))
                {
                    claims = ClaimsBoard.PathFor(options.OutDir, r.Notebook);
                    File.Copy(ClaimsBoard.PathFor(dir, r.Notebook), claims, overwrite: true);
                }
                results.Add(r with
                {
                    IpynbPath = r.IpynbPath is null ? null : Path.Combine(notebooksOut, Path.GetFileName(r.IpynbPath)),
                    HtmlPath = r.HtmlPath is null ? null : Path.Combine(notebooksOut, Path.GetFileName(r.HtmlPath)),
                    ClaimsPath = claims,
                });
            }
        }
        var runAt = manifests.Min(m => m.Manifest.Run.RunAt);
        var machines = manifests.Select(m => m.Manifest.Run.Machine).Distinct().ToList();
        var meta = manifests[0].Manifest.Run with
        {
            RunAt = runAt,
            Id = RunHistory.IdFor(runAt, commits[0]),
            Machine = machines.Count == 1 ? machines[0] : $"{manifests.Count} machines: {string.Join("; ", machines)}",
        };
        return BatchRunner.Publish(options, results.OrderBy(r => r.Notebook, StringComparer.Ordinal).ToList(), meta, shard: null);
    }

    static void CopyFolder(string from, string to)
    {
        if (!Directory.Exists(from)) return;
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target, overwrite: true);
        }
    }
}
