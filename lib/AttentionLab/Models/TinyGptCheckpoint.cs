using System.Text.Json;
using AttentionLab.Train;

namespace AttentionLab.Models;

/// <summary>
/// Loads a shipped checkpoint of a plain <see cref="TinyGpt"/> (library attention in every block) from its manifest entry
/// alone: the entry's config is a <see cref="TinyGptConfig"/>, at the top level or under "Model". Checkpoints whose blocks use
/// a paper's mixer (RCMHA, HCAM, landmark …) are loaded by their paper's code; here they fail with an ArgumentException
/// naming the checkpoint.
/// </summary>
public static class TinyGptCheckpoint
{
    static readonly JsonSerializerOptions json = new() { PropertyNameCaseInsensitive = false };

    /// <summary>The <see cref="TinyGptConfig"/> recorded for <paramref name="name"/> in <paramref name="store"/> (default data/models/).</summary>
    public static TinyGptConfig ConfigOf(string name, CheckpointStore? store = null)
    {
        store ??= CheckpointStore.Default();
        var entry = store.Find(name) ?? throw new ArgumentException(
            $"no checkpoint '{name}' in {store.Folder} (known: {string.Join(", ", store.Entries().Select(e => e.Name))}).", nameof(name));
        if (entry.ModelType != typeof(TinyGpt).FullName)
            throw new ArgumentException($"checkpoint '{name}' holds a {entry.ModelType}, not a TinyGpt.", nameof(name));
        var element = entry.Config;
        if (element.ValueKind == JsonValueKind.Object && element.TryGetProperty("Model", out var nested) && nested.ValueKind == JsonValueKind.Object)
            element = nested;
        bool looksLikeConfig = element.ValueKind == JsonValueKind.Object && element.TryGetProperty(nameof(TinyGptConfig.Layers), out _)
            && element.TryGetProperty(nameof(TinyGptConfig.VocabSize), out _) && element.TryGetProperty(nameof(TinyGptConfig.Positions), out _);
        if (!looksLikeConfig)
            throw new ArgumentException($"checkpoint '{name}' records no TinyGptConfig (its config is a paper's own record); load it with that " +
                "paper's code.", nameof(name));
        return (JsonSerializer.Deserialize<TinyGptConfig>(element.GetRawText(), json)
            ?? throw new ArgumentException($"checkpoint '{name}' has an empty config.", nameof(name))).Validate();
    }

    /// <summary>The trained model in eval mode (sha256 checked against the manifest); the caller disposes it.</summary>
    public static TinyGpt Load(string name, CheckpointStore? store = null)
    {
        store ??= CheckpointStore.Default();
        var model = new TinyGpt(ConfigOf(name, store));
        try
        {
            store.Load(model, name);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return model;
    }
}
