using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Bam;

/// <summary>What identifies the shipped seed-and-branches checkpoint: the model, the steps of each phase, batch, rate and seed.</summary>
public sealed record BamCheckpointKey(TinyGptConfig Model, int SeedSteps, int BranchSteps, int BatchSize, double LearningRate, int Seed);

/// <summary>
/// The seed and its N branches in one module (one checkpoint file): model 0 is the dense seed trained on the domain mixture,
/// model 1 + i its copy continued on domain i.
/// </summary>
public sealed class BamCheckpoint : nn.Module
{
    /// <summary>The shipped checkpoint's name in data/models/manifest.json (lib/AttentionLab.Checkpoints BamRecipe).</summary>
    public const string Name = "bam-seed-branches";

    readonly ModuleList<TinyGpt> models;

    /// <summary>Fresh models (seed + <paramref name="branches"/>) of <paramref name="config"/>; the branches start as copies of the seed.</summary>
    public BamCheckpoint(TinyGptConfig config, int branches) : base(nameof(BamCheckpoint))
    {
        ArgumentNullException.ThrowIfNull(config);
        Core.Guard.Positive(branches, nameof(branches));
        models = new ModuleList<TinyGpt>(Enumerable.Range(0, branches + 1).Select(_ => new TinyGpt(config)).ToArray());
        RegisterComponents();
        CopyFromSeed();
    }

    /// <summary>The dense seed.</summary>
    public TinyGpt Seed => models[0];
    /// <summary>The branches (branch i continued on domain i).</summary>
    public IReadOnlyList<TinyGpt> Branches => models.Skip(1).ToList();

    /// <summary>Branch ← seed, parameter by parameter (the Branch step starts from N copies of θ_seed).</summary>
    public void CopyFromSeed()
    {
        using var noGrad = torch.no_grad();
        var seed = Seed.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var branch in Branches)
            foreach (var (name, p) in branch.named_parameters()) p.copy_(seed[name]);
    }
}
