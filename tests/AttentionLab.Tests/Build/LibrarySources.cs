using System.Reflection;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace AttentionLab.Tests.Build;

/// <summary>The repository, and Roslyn compilations of C# sources against every assembly beside the tests.</summary>
public static class LibrarySources
{
    /// <summary>The repository root (the folder holding Notebooks.sln above the test binaries).</summary>
    public static string Repo { get; } = FindRepo();

    static string FindRepo()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Notebooks.sln"))) return dir.FullName;
        throw new InvalidOperationException("tests must run inside the repository");
    }

    /// <summary>Every .cs file of lib/AttentionLab (no obj/ or bin/).</summary>
    public static IReadOnlyList<string> LibraryFiles() =>
        Directory.EnumerateFiles(Path.Combine(Repo, "lib/AttentionLab"), "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                     && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal).ToList();

    static readonly Lazy<IReadOnlyList<MetadataReference>> references = new(() =>
    {
        var platform = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator);
        var beside = Directory.GetFiles(AppContext.BaseDirectory, "*.dll").Where(IsManaged);
        return platform.Concat(beside).GroupBy(Path.GetFileName).Select(g => (MetadataReference)MetadataReference.CreateFromFile(g.First())).ToList();
    });

    /// <summary>
    /// A compilation of <paramref name="trees"/> with the project's global usings, nullable on, against the test folder's
    /// assemblies (minus <paramref name="exclude"/>, e.g. the library itself when its sources are compiled).
    /// </summary>
    public static CSharpCompilation Compile(IEnumerable<SyntaxTree> trees, bool xunit = false, string? exclude = null)
    {
        const string globalUsings = "global using System; global using System.Collections.Generic; global using System.IO; global using System.Linq; " +
                                    "global using System.Net.Http; global using System.Threading; global using System.Threading.Tasks;";
        var all = trees.Append(CSharpSyntaxTree.ParseText(globalUsings + (xunit ? " global using Xunit;" : ""), Options)).ToList();
        var refs = references.Value.Where(r => exclude is null || !string.Equals(Path.GetFileName(r.Display), exclude, StringComparison.Ordinal));
        return CSharpCompilation.Create($"Compiled{Guid.NewGuid():N}", all, refs,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable,
                allowUnsafe: true, specificDiagnosticOptions: new Dictionary<string, ReportDiagnostic>
                {
                    ["CS1701"] = ReportDiagnostic.Suppress, ["CS1702"] = ReportDiagnostic.Suppress,
                }));
    }

    public static CSharpParseOptions Options { get; } = new(LanguageVersion.Latest);

    public static SyntaxTree Parse(string path) => CSharpSyntaxTree.ParseText(File.ReadAllText(path), Options, path);

    static bool IsManaged(string path)
    {
        try { AssemblyName.GetAssemblyName(path); return true; }
        catch (BadImageFormatException) { return false; }
    }
}
