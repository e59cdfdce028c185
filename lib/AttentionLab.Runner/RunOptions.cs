namespace AttentionLab.Runner;

/// <summary>Settings for running notebooks; shared by <see cref="NotebookRunner"/> and <see cref="BatchRunner"/>.</summary>
public sealed record RunOptions
{
    public const string Smoke = "smoke";
    public const string Full = "full";

    /// <summary>The repository root (holds Notebooks.sln and the .config/dotnet-tools.json that pins the kernel).</summary>
    public required string RepoRoot { get; init; }

    /// <summary>Where notebooks/, gallery/ and summary.csv are written.</summary>
    public required string OutDir { get; init; }

    /// <summary>smoke or full; passed to the kernel as ATTNLAB_SIZE.</summary>
    public string Size { get; init; } = Smoke;

    public TimeSpan CellTimeout { get; init; } = TimeSpan.FromSeconds(600);
    public TimeSpan NotebookTimeout { get; init; } = TimeSpan.FromSeconds(1200);

    /// <summary>How long to wait for KernelReady (also bounded by the notebook timeout).</summary>
    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromSeconds(180);

    /// <summary>
    /// The committed expected claim statuses the scoreboard compares against (default: tests/expected-claims.csv at smoke
    /// size, none at full size, where other statuses are expected).
    /// </summary>
    public string? ExpectedClaimsPath { get; init; }

    /// <summary><see cref="ExpectedClaimsPath"/>, or the repository's file at smoke size.</summary>
    public string? ExpectedClaimsFile => ExpectedClaimsPath ?? (Size == Smoke ? Path.Combine(RepoRoot, "tests", "expected-claims.csv") : null);

    /// <summary>Extra environment variables for the kernel (tests use it; null values remove a variable).</summary>
    public IReadOnlyDictionary<string, string?> Environment { get; init; } = new Dictionary<string, string?>();

    /// <summary>Throws ArgumentException when a value is out of range.</summary>
    public void Validate()
    {
        if (Size is not (Smoke or Full))
            throw new ArgumentException($"size '{Size}' is not smoke or full.", nameof(Size));
        if (CellTimeout <= TimeSpan.Zero) throw new ArgumentException("the cell timeout must be positive.", nameof(CellTimeout));
        if (NotebookTimeout <= TimeSpan.Zero) throw new ArgumentException("the notebook timeout must be positive.", nameof(NotebookTimeout));
        if (!File.Exists(Path.Combine(RepoRoot, RepoLocator.Marker)))
            throw new ArgumentException($"'{RepoRoot}' is not the repository root (no {RepoLocator.Marker}).", nameof(RepoRoot));
    }
}
