using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Build;

/// <summary>
/// The layering of lib/AttentionLab, checked on its sources: data flows downward only —
/// Atlas → Papers → Models/Interp/Train/Data → Attention/Plots/Bench → Core — and a paper folder never uses another
/// paper's folder. Every name a file mentions is resolved by the compiler; a reference to a type of a higher layer (or
/// of another paper) is a violation.
/// </summary>
public class LayeringTests(ITestOutputHelper output)
{
    /// <summary>The layer of a namespace under AttentionLab (higher may use lower); null outside the library.</summary>
    public static int? Layer(string ns)
    {
        var parts = ns.Split('.');
        if (parts[0] != "AttentionLab" || parts.Length < 2) return null;
        return parts[1] switch
        {
            "Core" => 0,
            "Attention" or "Plots" or "Bench" => 1,
            "Models" or "Interp" or "Train" or "Data" => 2,
            "Papers" => 3,
            "Atlas" => 4,
            _ => throw new InvalidOperationException($"namespace {ns} is in no layer: add it to LayeringTests.Layer and to design.md"),
        };
    }

    /// <summary>"AttentionLab.Papers.Based.X" → "Based"; null outside Papers.</summary>
    static string? Paper(string ns) => ns.Split('.') is { Length: >= 3 } p && p[0] == "AttentionLab" && p[1] == "Papers" ? p[2] : null;

    /// <summary>Every reference in <paramref name="compilation"/> that goes up a layer or across papers: "file:line: A uses B".</summary>
    public static IReadOnlyList<string> Violations(CSharpCompilation compilation, string? onlyFile = null)
    {
        var found = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var tree in compilation.SyntaxTrees.Where(t => onlyFile is null || t.FilePath == onlyFile))
        {
            var model = compilation.GetSemanticModel(tree);
            var root = tree.GetRoot();
            foreach (var node in root.DescendantNodes().OfType<SimpleNameSyntax>())
            {
                var from = model.GetEnclosingSymbol(node.SpanStart)?.ContainingNamespace?.ToDisplayString()
                           ?? root.DescendantNodes().OfType<BaseNamespaceDeclarationSyntax>().FirstOrDefault()?.Name.ToString();
                if (from is null || Layer(from) is not { } fromLayer) continue;
                var symbol = model.GetSymbolInfo(node).Symbol ?? model.GetSymbolInfo(node).CandidateSymbols.FirstOrDefault();
                var type = symbol switch
                {
                    ITypeSymbol t => t,
                    IMethodSymbol { MethodKind: MethodKind.Constructor } m => m.ContainingType,
                    { ContainingType: { } owner } => owner,
                    _ => null,
                };
                var to = type?.ContainingNamespace?.ToDisplayString();
                if (to is null || Layer(to) is not { } toLayer) continue;
                bool up = toLayer > fromLayer;
                bool across = Paper(from) is { } a && Paper(to) is { } b && a != b;
                if (up || across)
                {
                    var line = tree.GetLineSpan(node.Span).StartLinePosition.Line + 1;
                    found.Add($"{Path.GetFileName(tree.FilePath)}:{line}: {from} uses {type!.ToDisplayString()} ({(up ? "a higher layer" : "another paper")})");
                }
            }
        }
        return found.ToList();
    }

    static readonly Lazy<CSharpCompilation> library = new(() =>
        LibrarySources.Compile(LibrarySources.LibraryFiles().Select(LibrarySources.Parse), exclude: "AttentionLab.dll"));

    [Fact]
    public void DataFlowsDownwardOnly()
    {
        var compilation = library.Value;
        var errors = compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).Take(5).ToList();
        Assert.True(errors.Count == 0, "the library's sources do not compile here: " + string.Join("\n", errors));
        var violations = Violations(compilation);
        foreach (var v in violations) output.WriteLine(v);
        Assert.True(violations.Count == 0, $"{violations.Count} layering violation(s):\n" + string.Join("\n", violations));
    }

    [Theory]
    [InlineData("namespace AttentionLab.Core; static class Wrong { static object X => typeof(AttentionLab.Models.TinyGpt); }",
        "AttentionLab.Core uses AttentionLab.Models.TinyGpt (a higher layer)")]
    [InlineData("namespace AttentionLab.Attention; static class Wrong { static string X => AttentionLab.Papers.Aaren.AarenExperiment.AarenName; }",
        "(a higher layer)")]
    [InlineData("namespace AttentionLab.Papers.Aaren; static class Wrong { static object X => new AttentionLab.Atlas.MixerAtlas.Config(1,1,1,1,1,1,1,1,1); }",
        "AttentionLab.Atlas")]
    [InlineData("namespace AttentionLab.Papers.Aaren; using AttentionLab.Papers.Based; static class Wrong { static object X => typeof(BasedExperiment); }",
        "(another paper)")]
    public void AWrongReferenceIsCaught(string source, string message)
    {
        var violations = Violations(library.Value.AddSyntaxTrees(CSharpSyntaxTree.ParseText(source, LibrarySources.Options, "Extra.cs")), "Extra.cs");
        Assert.Contains(violations, v => v.StartsWith("Extra.cs:1:", StringComparison.Ordinal) && v.Contains(message, StringComparison.Ordinal));
    }
}
