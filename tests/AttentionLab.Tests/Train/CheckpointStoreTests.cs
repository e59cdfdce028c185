using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Train;

public class CheckpointStoreTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("ckpt-").FullName;

    static TinyGpt Model(int seed)
    {
        torch.manual_seed(seed);
        return new TinyGpt(new TinyGptConfig(Layers: 1, DModel: 16, Heads: 2, VocabSize: 20, Positions: AttentionLab.Attention.PositionKind.Learned,
            MaxLength: 16));
    }

    [Fact]
    public void SaveThenLoadReproducesTheOutputsAndTheManifestSaysHow()
    {
        var store = new CheckpointStore(dir);
        using var a = Model(1);
        var entry = store.Save(a, "tiny-test", new { layers = 1, width = 16 }, seed: 1, steps: 0, finalLoss: 2.5,
            command: "dotnet run --project X -- tiny-test");
        Assert.Equal(64, entry.Sha256.Length);
        Assert.Equal(entry.Sha256, store.Find("tiny-test")!.Sha256);
        Assert.Equal(16, store.Find("tiny-test")!.Config.GetProperty("width").GetInt32());
        Assert.Equal("dotnet run --project X -- tiny-test", store.Entries().Single().Command);

        using var b = Model(2);   // different weights until loaded
        using var tokens = torch.randint(0, 20, new long[] { 2, 8 });
        using var before = b.call(tokens);
        store.Load(b, "tiny-test");
        using var expected = a.call(tokens);
        using var after = b.call(tokens);
        Assert.False(before.equal(expected).all().item<bool>());
        Assert.True(after.equal(expected).all().item<bool>());
    }

    [Fact]
    public void ACorruptOrMissingFileIsRefusedWithTheRegenerationCommand()
    {
        var store = new CheckpointStore(dir);
        using var a = Model(1);
        var entry = store.Save(a, "tiny", new { }, 1, 0, 0, "regen-command tiny");
        string path = Path.Combine(dir, entry.File);
        var bytes = File.ReadAllBytes(path);
        bytes[^1] ^= 0xFF;
        File.WriteAllBytes(path, bytes);
        var bad = Assert.Throws<InvalidDataException>(() => store.Load(a, "tiny"));
        Assert.Contains("regen-command tiny", bad.Message);
        File.Delete(path);
        Assert.Contains("regen-command tiny", Assert.Throws<FileNotFoundException>(() => store.Load(a, "tiny")).Message);
        Assert.Throws<FileNotFoundException>(() => store.Load(a, "unknown"));
        Assert.Equal("name", Assert.Throws<ArgumentException>(() => store.Save(a, "../escape", new { }, 1, 0, 0, "x")).ParamName);
    }

    [Fact]
    public void TheDefaultStoreIsThisRepositorysDataModels()
    {
        var store = CheckpointStore.Default();
        Assert.EndsWith(Path.Combine("data", "models"), store.Folder);
        Assert.True(File.Exists(Path.Combine(store.Folder, "..", "..", "Notebooks.sln")));
    }

    public void Dispose() => Directory.Delete(dir, recursive: true);
}

/// <summary>Checkpoint errors a user can act on: the file, the checkpoint's and the model's config, the regeneration command.</summary>
public class CheckpointErrorTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("ckpt-errors-").FullName;
    const string Command = "dotnet run --project lib/AttentionLab.Checkpoints -c Release -- tiny --seed 1";

    static TinyGpt Model(int layers) => new(new TinyGptConfig(Layers: layers, DModel: 16, Heads: 2, VocabSize: 20,
        Positions: AttentionLab.Attention.PositionKind.Learned, MaxLength: 16));

    CheckpointEntry SaveOneLayer(CheckpointStore store)
    {
        using var a = Model(1);
        return store.Save(a, "tiny", a.Config, seed: 1, steps: 0, finalLoss: 0, command: Command);
    }

    [Fact]
    public void AModelWithAnotherConfigIsRefusedNamingTheFileBothConfigsAndTheCommand()
    {
        var store = new CheckpointStore(dir);
        var entry = SaveOneLayer(store);
        using var two = Model(2);
        var e = Assert.Throws<ArgumentException>(() => store.Load(two, "tiny"));
        Assert.Equal("model", e.ParamName);
        Assert.Contains(Path.Combine(dir, entry.File), e.Message);
        Assert.Contains("Layers: 1 vs 2", e.Message);
        Assert.Contains("\"Layers\":1", e.Message);                 // the checkpoint's config
        Assert.Contains("\"Layers\":2", e.Message);                 // the model's
        Assert.Contains(Command, e.Message);
        Assert.NotNull(e.InnerException);                           // the loader's own words stay inside

        var early = Assert.Throws<ArgumentException>(() => store.Load(two, "tiny", two.Config));
        Assert.Equal("config", early.ParamName);
        Assert.Contains("Layers: 1 vs 2", early.Message);
        Assert.Contains(Command, early.Message);

        using var one = Model(1);
        Assert.Equal("tiny", store.Load(one, "tiny", one.Config).Name);   // the right config loads
    }

    [Theory]
    [InlineData("{ this is not json")]
    [InlineData("{\"Name\": \"tiny\"}")]
    [InlineData("[{\"Sha256\": \"00\"}]")]
    public void AnInvalidManifestIsRefusedNamingItsPath(string text)
    {
        var store = new CheckpointStore(dir);
        File.WriteAllText(Path.Combine(dir, CheckpointStore.ManifestName), text);
        var e = Assert.Throws<InvalidDataException>(() => store.Entries());
        Assert.Contains(Path.Combine(dir, CheckpointStore.ManifestName), e.Message);
        using var one = Model(1);
        Assert.Contains(Path.Combine(dir, CheckpointStore.ManifestName), Assert.Throws<InvalidDataException>(() => store.Load(one, "tiny")).Message);
    }

    [Fact]
    public void ATruncatedCheckpointIsRefusedNamingTheFile()
    {
        var store = new CheckpointStore(dir);
        var entry = SaveOneLayer(store);
        string path = Path.Combine(dir, entry.File);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        // A file cut short before its digest was recorded: the digest matches, the contents end early.
        string manifest = Path.Combine(dir, CheckpointStore.ManifestName);
        File.WriteAllText(manifest, File.ReadAllText(manifest).Replace(entry.Sha256, CheckpointStore.Digest(path)));
        using var one = Model(1);
        var e = Assert.Throws<InvalidDataException>(() => store.Load(one, "tiny"));
        Assert.Contains(path, e.Message);
        Assert.Contains("ends early", e.Message);
        Assert.Contains(Command, e.Message);
    }

    public void Dispose() => Directory.Delete(dir, recursive: true);
}
