using System.Text.Json;
using System.Text.Json.Serialization;
using static TorchSharp.torch;

namespace AttentionLab.Train;

/// <summary>One shipped checkpoint as the manifest records it.</summary>
/// <param name="Name">File-system-safe name, e.g. "induction-2l-attn-only".</param>
/// <param name="File">File name beside the manifest.</param>
/// <param name="Sha256">Lower-case hex digest of the file.</param>
/// <param name="ModelType">The model class that loads it.</param>
/// <param name="Config">The model's config (JSON), so a loader can rebuild the module before loading the weights.</param>
/// <param name="Seed">Seed of the training run.</param>
/// <param name="Steps">Optimiser steps taken.</param>
/// <param name="FinalLoss">Training loss at the end.</param>
/// <param name="Command">The exact command that regenerates this file from a clean checkout.</param>
/// <param name="CreatedUtc">When it was written.</param>
/// <param name="LibraryVersion">AttentionLab's informational version at the time.</param>
public sealed record CheckpointEntry(string Name, string File, string Sha256, string ModelType, JsonElement Config, int Seed, int Steps,
    double FinalLoss, string Command, DateTimeOffset CreatedUtc, string LibraryVersion);

/// <summary>
/// Small model checkpoints shipped in data/models/ with a manifest (manifest.json: sha256, config, seed, final loss and the
/// command that regenerates each file), so smoke runs load instead of training for minutes. Loading verifies the digest.
/// </summary>
public sealed class CheckpointStore
{
    /// <summary>The manifest's file name inside the store folder.</summary>
    public const string ManifestName = "manifest.json";
    static readonly JsonSerializerOptions json = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.Never };

    public CheckpointStore(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        Folder = Path.GetFullPath(folder);
    }

    /// <summary>The store's folder.</summary>
    public string Folder { get; }

    /// <summary>
    /// data/models/ of this repository: found by walking up from the AttentionLab assembly (artifacts/lib/ in notebooks,
    /// a bin folder in tests) to the folder that holds Notebooks.sln.
    /// </summary>
    public static CheckpointStore Default() => new(Path.Combine(Core.RepositoryData.Folder(), "models"));

    /// <summary>Every entry of the manifest (empty when there is none yet); a manifest that does not parse → InvalidDataException naming it.</summary>
    public IReadOnlyList<CheckpointEntry> Entries()
    {
        string path = Path.Combine(Folder, ManifestName);
        if (!System.IO.File.Exists(path)) return Array.Empty<CheckpointEntry>();
        List<CheckpointEntry>? entries;
        try { entries = JsonSerializer.Deserialize<List<CheckpointEntry>>(System.IO.File.ReadAllText(path), json); }
        catch (JsonException e)
        {
            throw new InvalidDataException($"checkpoint manifest {path} is not valid: {e.Message} Restore it from git " +
                "(git checkout -- data/models/manifest.json) or regenerate the checkpoints (lib/AttentionLab.Checkpoints).", e);
        }
        if (entries is null || entries.Any(e => e is null || e.Name is null || e.File is null || e.Sha256 is null || e.Command is null))
            throw new InvalidDataException($"checkpoint manifest {path} is not a list of entries with Name, File, Sha256 and Command.");
        return entries;
    }

    /// <summary>The entry called <paramref name="name"/>, or null.</summary>
    public CheckpointEntry? Find(string name) => Entries().FirstOrDefault(e => e.Name == CheckName(name));

    /// <summary>Writes the module's weights as &lt;name&gt;.bin and records them in the manifest (replacing an entry of that name).</summary>
    public CheckpointEntry Save(nn.Module model, string name, object config, int seed, int steps, double finalLoss, string command)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentException.ThrowIfNullOrWhiteSpace(command);
        name = CheckName(name);
        Directory.CreateDirectory(Folder);
        string file = name + ".bin";
        model.save(Path.Combine(Folder, file));
        var entry = new CheckpointEntry(name, file, Digest(Path.Combine(Folder, file)), model.GetType().FullName ?? model.GetType().Name,
            JsonSerializer.SerializeToElement(config, config.GetType(), json), seed, steps, finalLoss, command, DateTimeOffset.UtcNow,
            Core.BuildInfo.Current.Version);
        var entries = Entries().Where(e => e.Name != name).Append(entry).OrderBy(e => e.Name, StringComparer.Ordinal).ToList();
        System.IO.File.WriteAllText(Path.Combine(Folder, ManifestName), JsonSerializer.Serialize(entries, json) + "\n");
        return entry;
    }

    /// <summary>
    /// Loads the weights of <paramref name="name"/> into <paramref name="model"/> after checking the file's sha256 against the
    /// manifest. Missing entry or file → FileNotFoundException naming the regeneration command; digest mismatch → InvalidDataException.
    /// A model built with another config → ArgumentException (parameter <paramref name="config"/> when given and different from the
    /// manifest's, else <paramref name="model"/>) naming the file, the manifest's config, the model's and the regeneration command;
    /// a file that ends early or does not parse → InvalidDataException naming the file (the loader's exception inside).
    /// </summary>
    /// <param name="model">The module to fill; built with the checkpoint's config.</param>
    /// <param name="name">The manifest entry.</param>
    /// <param name="config">Optional: the config <paramref name="model"/> was built with, checked against the manifest before loading.</param>
    public CheckpointEntry Load(nn.Module model, string name, object? config = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var entry = Find(name) ?? throw new FileNotFoundException(
            $"no checkpoint '{name}' in {Path.Combine(Folder, ManifestName)} (known: {string.Join(", ", Entries().Select(e => e.Name))}).");
        string path = Path.Combine(Folder, entry.File);
        if (!System.IO.File.Exists(path))
            throw new FileNotFoundException($"checkpoint file {path} is missing; regenerate it with: {entry.Command}", path);
        string digest = Digest(path);
        if (digest != entry.Sha256)
            throw new InvalidDataException($"checkpoint {path} has sha256 {digest}, the manifest says {entry.Sha256}; regenerate it with: {entry.Command}");
        if (config is not null)
        {
            var given = JsonSerializer.SerializeToElement(config, config.GetType(), json);
            var differences = ConfigDifferences(entry.Config, given);
            if (differences.Count > 0)
                throw new ArgumentException(ConfigMismatch(path, entry, given, differences, model), nameof(config));
        }
        try { model.load(path); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            var found = ModelConfig(model);
            var differences = found is { } f ? ConfigDifferences(entry.Config, f) : new List<string>();
            throw new ArgumentException(ConfigMismatch(path, entry, found, differences, model) + $" (loader: {e.Message})", nameof(model), e);
        }
        catch (IOException e)
        {
            throw new InvalidDataException($"checkpoint {path} ends early or is not a TorchSharp state dict ({e.GetType().Name}: {e.Message}); " +
                $"regenerate it with: {entry.Command}", e);
        }
        return entry;
    }

    /// <summary>The message for a model whose config is not the checkpoint's.</summary>
    static string ConfigMismatch(string path, CheckpointEntry entry, JsonElement? found, IReadOnlyList<string> differences, nn.Module model)
    {
        string foundText = found is { } f ? Raw(f) : $"unknown (a {model.GetType().Name} with {model.state_dict().Count} tensors)";
        string diff = differences.Count > 0 ? $" Differences (checkpoint vs model): {string.Join("; ", differences)}." : "";
        return $"checkpoint {path} was made for a {entry.ModelType} with config {Raw(entry.Config)}, but the model has config " +
            $"{foundText}.{diff} Build the model with the checkpoint's config, or regenerate the checkpoint for yours with: {entry.Command}";
    }

    /// <summary>Compact JSON of a config (the manifest stores it indented).</summary>
    static string Raw(JsonElement element) => element.ValueKind == JsonValueKind.Undefined ? "(none recorded)" : JsonSerializer.Serialize(element);

    /// <summary>The model's public Config property as JSON, when it has one.</summary>
    static JsonElement? ModelConfig(nn.Module model)
    {
        var property = model.GetType().GetProperty("Config");
        return property?.GetValue(model) is { } value ? JsonSerializer.SerializeToElement(value, value.GetType(), json) : null;
    }

    /// <summary>Top-level fields whose values differ ("Layers: 4 vs 2"); a field missing on one side counts.</summary>
    static List<string> ConfigDifferences(JsonElement expected, JsonElement found)
    {
        var result = new List<string>();
        if (expected.ValueKind != JsonValueKind.Object || found.ValueKind != JsonValueKind.Object)
        {
            if (Raw(expected) != Raw(found)) result.Add($"{Raw(expected)} vs {Raw(found)}");
            return result;
        }
        var e = expected.EnumerateObject().ToDictionary(p => p.Name, p => Raw(p.Value));
        var f = found.EnumerateObject().ToDictionary(p => p.Name, p => Raw(p.Value));
        foreach (var key in e.Keys.Union(f.Keys))
        {
            string a = e.TryGetValue(key, out var x) ? x : "(absent)", b = f.TryGetValue(key, out var y) ? y : "(absent)";
            if (a != b) result.Add($"{key}: {a} vs {b}");
        }
        return result;
    }

    /// <summary>Lower-case hex sha256 of a file.</summary>
    public static string Digest(string path) => Core.RepositoryData.Sha256(path);

    static string CheckName(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (name.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')) || name.StartsWith('.'))
            throw new ArgumentException($"checkpoint name '{name}' may hold only letters, digits, '-', '_' and '.' (not first).", nameof(name));
        return name;
    }
}
