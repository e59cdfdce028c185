using AttentionLab.Core;

namespace AttentionLab.Data;

/// <summary>One country of the shipped facts: ISO 3166-1 alpha-2 code, English name, capital, continent and (first) currency code.</summary>
public sealed record CountryFact(string Code, string Country, string Capital, string Continent, string Currency);

/// <summary>One English first name of the shipped list and the list it came from ("female" or "male"; a name may be in both).</summary>
public sealed record FirstName(string Name, string Gender);

/// <summary>
/// Small real facts for the interpretability notebooks (issue 14): data/facts/countries.tsv (countries-list 3.4.1, MIT) and
/// data/facts/first-names.tsv (stdlib's English first-name lists 0.2.3, PDDL-1.0 AND CC0-1.0), both written by
/// environment/data/make-facts.sh and checked against the sha256 data/README.md records on every load.
/// </summary>
public static class Facts
{
    /// <summary>The countries file under data/.</summary>
    public const string CountriesFile = "facts/countries.tsv";
    /// <summary>Its sha256 (data/README.md).</summary>
    public const string CountriesSha256 = "9b8b2561b2fd71242a70f88dadbe15e98dd3706c6252ef4fd93b9b4b2315542a";
    /// <summary>The first-names file under data/.</summary>
    public const string FirstNamesFile = "facts/first-names.tsv";
    /// <summary>Its sha256 (data/README.md).</summary>
    public const string FirstNamesSha256 = "37729488755513206dc3684ecf0e96d6627000a5a2678291caed4b22f550e6be";
    /// <summary>The command that regenerates both.</summary>
    public const string Command = "environment/data/make-facts.sh";

    /// <summary>Every country with a capital and a currency (247 rows), sorted by code.</summary>
    public static IReadOnlyList<CountryFact> Countries(string? path = null) =>
        Rows(path ?? Path.Combine(RepositoryData.Folder(), CountriesFile), CountriesSha256, "code\tcountry\tcapital\tcontinent\tcurrency", 5)
            .Select(f => new CountryFact(f[0], f[1], f[2], f[3], f[4])).ToList();

    /// <summary>Every first name with its list (8,849 rows), sorted by name.</summary>
    public static IReadOnlyList<FirstName> FirstNames(string? path = null) =>
        Rows(path ?? Path.Combine(RepositoryData.Folder(), FirstNamesFile), FirstNamesSha256, "name\tgender", 2)
            .Select(f => new FirstName(f[0], f[1])).ToList();

    static IEnumerable<string[]> Rows(string path, string sha256, string header, int columns)
    {
        RepositoryData.Verify(path, sha256, Command);
        var lines = File.ReadAllLines(path);
        if (lines.Length == 0 || lines[0] != header)
            throw new InvalidDataException($"{path} does not start with the header '{header}'; regenerate it with: {Command}");
        return lines.Skip(1).Select((line, i) =>
        {
            var fields = line.Split('\t');
            return fields.Length == columns ? fields
                : throw new InvalidDataException($"{path} line {i + 2} has {fields.Length} fields, not {columns}; regenerate it with: {Command}");
        }).ToList();
    }
}
