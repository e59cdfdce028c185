using AttentionLab.Core;
using AttentionLab.Data;

namespace AttentionLab.Tests.Data;

/// <summary>The shipped facts load, hold what their sources say, and a changed file is refused with the command that regenerates it.</summary>
public class FactsTests
{
    [Fact]
    public void CountriesHoldTheirCapitalsContinentsAndCurrencies()
    {
        var countries = Facts.Countries();
        Assert.Equal(247, countries.Count);
        Assert.Equal(countries.Select(c => c.Code).Order(StringComparer.Ordinal), countries.Select(c => c.Code));
        Assert.Equal(countries.Count, countries.Select(c => c.Code).Distinct().Count());
        var france = Assert.Single(countries, c => c.Code == "FR");
        Assert.Equal(new CountryFact("FR", "France", "Paris", "Europe", "EUR"), france);
        Assert.Equal(new CountryFact("JP", "Japan", "Tokyo", "Asia", "JPY"), Assert.Single(countries, c => c.Code == "JP"));
        Assert.Equal("Brasília", Assert.Single(countries, c => c.Code == "BR").Capital);                   // UTF-8 kept
        Assert.Equal(7, countries.Select(c => c.Continent).Distinct().Count());
        Assert.All(countries, c => Assert.Matches("^[A-Z]{3}$", c.Currency));
    }

    [Fact]
    public void FirstNamesComeFromBothLists()
    {
        var names = Facts.FirstNames();
        Assert.Equal(8849, names.Count);
        Assert.Equal(4951, names.Count(n => n.Gender == "female"));
        Assert.Equal(3898, names.Count(n => n.Gender == "male"));
        Assert.All(names, n => Assert.False(string.IsNullOrWhiteSpace(n.Name)));
    }

    [Fact]
    public void TheDigestsAreTheOnesDataReadmeRecords()
    {
        string readme = File.ReadAllText(Path.Combine(RepositoryData.Folder(), "README.md"));
        Assert.Contains($"`{Facts.CountriesFile}`", readme);
        Assert.Contains(Facts.CountriesSha256, readme);
        Assert.Contains($"`{Facts.FirstNamesFile}`", readme);
        Assert.Contains(Facts.FirstNamesSha256, readme);
    }

    [Fact]
    public void AChangedFileIsRefusedWithItsCommand()
    {
        string copy = Path.Combine(Path.GetTempPath(), $"attnlab-facts-{Guid.NewGuid():N}.tsv");
        try
        {
            File.WriteAllText(copy, File.ReadAllText(Path.Combine(RepositoryData.Folder(), Facts.CountriesFile)).Replace("Paris", "Lyon"));
            var e = Assert.Throws<InvalidDataException>(() => Facts.Countries(copy));
            Assert.Contains(Facts.Command, e.Message);
        }
        finally { File.Delete(copy); }
    }
}
