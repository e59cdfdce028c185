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

    /// <summary>Every entry of the manifest (empty when there is none yet).</summary>
    public IReadOnlyList<CheckpointEntry> Entries()
    {
        string path = Path.Combine(Folder, ManifestName);
        if (!System.IO.File.Exists(path)) return Array.Empty<CheckpointEntry>();
        return JsonSerializer.Deserialize<List<CheckpointEntry>>(System.IO.File.ReadAllText(path), json) ?? new List<CheckpointEntry>();
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
    /// </summary>
    public CheckpointEntry Load(nn.Module model, string name)
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
        model.load(path);
        return entry;
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
