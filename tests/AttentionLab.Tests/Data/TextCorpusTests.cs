using AttentionLab.Core;
using AttentionLab.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Data;

public class TextCorpusTests
{
    [Fact]
    public void ShippedMobyDickMatchesItsDigestAndReadme()
    {
        var corpus = TextCorpus.MobyDick();
        Assert.StartsWith("CHAPTER 1. Loomings.", corpus.Text);
        Assert.Contains("Call me Ishmael.", corpus.Text);
        Assert.Equal(corpus.Characters.Count + 1, corpus.VocabSize);
        string readme = File.ReadAllText(Path.Combine(RepositoryData.Folder(), "README.md"));
        Assert.Contains(TextCorpus.MobyDickSha256, readme);                        // data/README.md records the digest the loader checks
        Assert.Contains(TextCorpus.MobyDickFile, readme);
    }

    [Fact]
    public void WindowsPredictTheNextCharacterAfterBos()
    {
        var corpus = new TextCorpus("the quick brown fox jumps over the lazy dog. " + new string('z', 40), "test");
        using var batch = corpus.Contiguous(6, CorpusSplit.Train, offset: 4);
        var tokens = batch.Tokens[0].data<long>().ToArray();
        var labels = batch.Labels[0].data<long>().ToArray();
        Assert.Equal(corpus.BosToken, tokens[0]);
        Assert.Equal("⟨bos⟩quick", corpus.Decode(tokens));
        Assert.Equal("quick ", corpus.Decode(labels));                               // each label is the character after its token
        using var plain = corpus.Contiguous(5, CorpusSplit.Train, offset: 4, bos: false);
        Assert.Equal("quick", corpus.Decode(plain.Tokens[0].data<long>().ToArray()));
        Assert.Equal("uick ", corpus.Decode(plain.Labels[0].data<long>().ToArray()));
    }

    [Fact]
    public void SamplesAreSeededAndStayInsideTheirSplit()
    {
        var corpus = TextCorpus.MobyDick();
        using var a = corpus.Sample(8, 32, seed: 3);
        using var b = corpus.Sample(8, 32, seed: 3);
        using var c = corpus.Sample(8, 32, seed: 4);
        Assert.True(a.Tokens.eq(b.Tokens).all().item<bool>());
        Assert.False(a.Tokens.eq(c.Tokens).all().item<bool>());
        string validation = corpus.Text[corpus.TrainLength..];
        using var v = corpus.Sample(16, 24, seed: 5, CorpusSplit.Validation, bos: false);
        for (int n = 0; n < 16; n++)
        {
            string window = corpus.Decode(v.Tokens[n].data<long>().ToArray()) + corpus.Decode(new[] { v.Labels[n, 23].item<long>() });
            Assert.Contains(window, validation);
        }
    }

    [Fact]
    public void BadArgumentsAreNamed()
    {
        var corpus = new TextCorpus(new string('a', 20) + "b", "tiny");
        Assert.Equal("text", Assert.Throws<ArgumentException>(() => corpus.Encode("abc")).ParamName);
        Assert.Equal("length", Assert.Throws<ArgumentOutOfRangeException>(() => corpus.Sample(1, 50, 0)).ParamName);
        Assert.Equal("text", Assert.Throws<ArgumentException>(() => new TextCorpus("short", "x")).ParamName);
        var missing = Path.Combine(Path.GetTempPath(), "no-such-corpus.txt");
        Assert.Throws<FileNotFoundException>(() => TextCorpus.MobyDick(missing));
        string wrong = Path.GetTempFileName();
        File.WriteAllText(wrong, "not Moby-Dick at all, not even close");
        Assert.Throws<InvalidDataException>(() => TextCorpus.MobyDick(wrong));
        File.Delete(wrong);
    }
}
