using System.Security.Cryptography;

namespace AttentionLab.Core;

/// <summary>
/// Finds the repository's shipped data (data/ beside Notebooks.sln) from the AttentionLab assembly — artifacts/lib/ in
/// notebooks, a bin folder in tests — and checks files against the digests data/README.md records.
/// </summary>
public static class RepositoryData
{
    /// <summary>data/ of this repository: the folder beside the nearest Notebooks.sln above the AttentionLab assembly.</summary>
    public static string Folder()
    {
        for (var dir = new DirectoryInfo(Path.GetDirectoryName(typeof(RepositoryData).Assembly.Location) ?? "."); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Notebooks.sln")))
                return Path.Combine(dir.FullName, "data");
        throw new DirectoryNotFoundException("no Notebooks.sln above the AttentionLab assembly: pass the data file's path explicitly.");
    }

    /// <summary>Lower-case hex sha256 of a file.</summary>
    public static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>Throws <see cref="InvalidDataException"/> naming the file and the regeneration command when its digest differs.</summary>
    public static void Verify(string path, string expectedSha256, string regenerate)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"data file {path} is missing; regenerate it with: {regenerate}", path);
        string actual = Sha256(path);
        if (!string.Equals(actual, expectedSha256, StringComparison.OrdinalIgnoreCase))
            throw new InvalidDataException($"{path} has sha256 {actual}, data/README.md says {expectedSha256}; regenerate it with: {regenerate}");
    }
}
