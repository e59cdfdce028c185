using System.Reflection;

namespace AttentionLab.Tests.Build;

/// <summary>
/// One rule for naive twins (issue 11): a method's naive twin lives in a static class named …Naive, in a file of the same
/// name inside its folder — never as a <c>Naive()</c> method of the fast class.
/// </summary>
public class NaiveTwinRuleTests
{
    static readonly Assembly Library = typeof(AttentionLab.Core.Lab).Assembly;

    [Fact]
    public void NoMethodOutsideANaiveClassIsNamedNaive()
    {
        var offenders = Library.GetTypes()
            .Where(t => t.IsPublic && !t.Name.EndsWith("Naive", StringComparison.Ordinal))
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Static | BindingFlags.Instance | BindingFlags.DeclaredOnly)
                // properties are measurements
                .Where(m => !m.IsSpecialName && m.Name.Contains("Naive", StringComparison.Ordinal)).Select(m => $"{t.FullName}.{m.Name}"))
            .Distinct().ToList();
        Assert.True(offenders.Count == 0, "naive twins belong in a …Naive class of their own file: " + string.Join(", ", offenders));
    }

    [Fact]
    public void EveryNaiveClassHasItsOwnFile()
    {
        var files = LibrarySources.LibraryFiles().Select(Path.GetFileNameWithoutExtension).ToHashSet(StringComparer.Ordinal);
        var naive = Library.GetTypes().Where(t => t.IsPublic && t.Name.EndsWith("Naive", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(naive);
        Assert.All(naive, t => Assert.True(files.Contains(t.Name), $"{t.FullName} is not in a file named {t.Name}.cs"));
    }

    [Fact]
    public void TheRuleCatchesANaiveMethodOnAFastClass()
    {
        // the same predicate as above, on a type that breaks the rule
        var bad = typeof(Offender).GetMethods(BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly).Where(
            m => m.Name.Contains("Naive", StringComparison.Ordinal));
        Assert.Single(bad);
    }

    static class Offender
    {
        public static int Naive() => 0;
    }
}
