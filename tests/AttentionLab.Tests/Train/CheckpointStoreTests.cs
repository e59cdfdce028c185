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
