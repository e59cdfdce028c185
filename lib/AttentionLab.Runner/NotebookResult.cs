namespace AttentionLab.Runner;

/// <summary>The outcome of one notebook. <see cref="FailedCell"/> is the 1-based cell number in the notebook.</summary>
public sealed record NotebookResult
{
    public required string Notebook { get; init; }
    public required bool Passed { get; init; }
    public required double Seconds { get; init; }
    public required string Device { get; init; }
    public required string Size { get; init; }
    /// <summary>"cell 7: first lines of the error", or null when it passed.</summary>
    public string? Error { get; init; }
    public int? FailedCell { get; init; }
    public DateTimeOffset StartedAt { get; init; }
    /// <summary>Cells that were sent to the kernel, in order (1-based numbers).</summary>
    public IReadOnlyList<int> CellsRun { get; init; } = [];
    public string? IpynbPath { get; init; }
    public string? HtmlPath { get; init; }
    /// <summary>The claims file the notebook's check cell wrote (null when it wrote none).</summary>
    public string? ClaimsPath { get; init; }

    public string Status => Passed ? "passed" : "failed";

    /// <summary>The error on one line (for summary.csv and the gallery), at most <paramref name="max"/> characters.</summary>
    public string OneLineError(int max = 400)
    {
        if (Error is null) return "";
        string line = string.Join(" | ", Error.Replace("\r\n", "\n").Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        return line.Length <= max ? line : line[..(max - 1)] + "…";
    }
}

/// <summary>Shortens kernel error messages to the lines a reader needs.</summary>
public static class ErrorText
{
    /// <summary>
    /// The first <paramref name="lines"/> non-empty lines of the outermost exception, without stack frames: an inner exception
    /// (" ---> …", e.g. the libtorch text an ArgumentException wraps) and native frames ("Exception raised from …",
    /// "frame #N: …") stay out, so summary.csv and the gallery show the library's own message.
    /// </summary>
    public static string FirstLines(string message, int lines = 4) =>
        string.Join('\n', message.Replace("\r\n", "\n").Split('\n')
            .TakeWhile(l => !l.TrimStart().StartsWith("--->", StringComparison.Ordinal))
            .Where(l => l.Trim().Length > 0 && !IsFrame(l.TrimStart()))
            .Take(lines));

    static bool IsFrame(string line) =>
        line.StartsWith("at ", StringComparison.Ordinal) || line.StartsWith("--- End of", StringComparison.Ordinal)
        || line.StartsWith("Exception raised from ", StringComparison.Ordinal) || line.StartsWith("frame #", StringComparison.Ordinal);
}
