using System.Text.RegularExpressions;

namespace AttentionLab.Tests.Build;

/// <summary>
/// The .editorconfig's line width holds in every C# file of the repository (Roslyn's analyzers do not enforce
/// <c>max_line_length</c>, so this test does; the other style rules are build errors through EnforceCodeStyleInBuild).
/// </summary>
public class FormattingTests
{
    /// <summary>max_line_length of the [*.cs] section of the root .editorconfig.</summary>
    static int MaxLineLength()
    {
        var text = File.ReadAllText(Path.Combine(LibrarySources.Repo, ".editorconfig"));
        var match = Regex.Match(text, @"^max_line_length\s*=\s*(\d+)", RegexOptions.Multiline);
        Assert.True(match.Success, ".editorconfig must set max_line_length");
        return int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
    }

    static IEnumerable<string> SourceFiles()
    {
        var sep = Path.DirectorySeparatorChar;
        foreach (var root in new[] { "lib", "tests", "environment" })
            foreach (var file in Directory.EnumerateFiles(Path.Combine(LibrarySources.Repo, root), "*.cs", SearchOption.AllDirectories))
                if (!file.Contains($"{sep}bin{sep}", StringComparison.Ordinal) && !file.Contains($"{sep}obj{sep}", StringComparison.Ordinal))
                    yield return file;
    }

    /// <summary>Lines wider than <paramref name="width"/> (in UTF-16 code units, as editors count columns here), "file:line (width)".</summary>
    public static IReadOnlyList<string> WideLines(IEnumerable<string> files, int width) =>
        files.SelectMany(f => File.ReadLines(f).Select((line, i) => (line, i))
                .Where(x => x.line.Length > width)
                .Select(x => $"{Path.GetRelativePath(LibrarySources.Repo, f)}:{x.i + 1} ({x.line.Length})"))
            .ToList();

    [Fact]
    public void NoLineIsWiderThanTheEditorconfigSays()
    {
        int width = MaxLineLength();
        var wide = WideLines(SourceFiles(), width);
        Assert.True(wide.Count == 0, $"{wide.Count} lines over max_line_length = {width}:\n" + string.Join("\n", wide.Take(40)));
    }

    [Fact]
    public void AWideLineIsCaught()
    {
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllLines(file, ["short", new string('x', MaxLineLength() + 1)]);
            Assert.Single(WideLines([file], MaxLineLength()));
        }
        finally { File.Delete(file); }
    }
}
