namespace AttentionLab.Runner;

/// <summary>Finds the repository root by walking up to Notebooks.sln.</summary>
public static class RepoLocator
{
    public const string Marker = "Notebooks.sln";

    /// <summary>The nearest folder at or above <paramref name="start"/> that holds Notebooks.sln, or null.</summary>
    public static string? TryFind(string start)
    {
        for (var dir = new DirectoryInfo(Path.GetFullPath(start)); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, Marker))) return dir.FullName;
        return null;
    }

    /// <summary>From the current directory, then from this assembly's folder.</summary>
    public static string Find() =>
        TryFind(Directory.GetCurrentDirectory()) ?? TryFind(AppContext.BaseDirectory)
        ?? throw new InvalidOperationException($"No {Marker} above '{Directory.GetCurrentDirectory()}'; pass --repo-root.");

    /// <summary>True when <paramref name="path"/> is <paramref name="folder"/> or inside it.</summary>
    public static bool IsInside(string path, string folder)
    {
        string p = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path)) + Path.DirectorySeparatorChar;
        string f = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder)) + Path.DirectorySeparatorChar;
        return p.StartsWith(f, StringComparison.Ordinal);
    }
}
