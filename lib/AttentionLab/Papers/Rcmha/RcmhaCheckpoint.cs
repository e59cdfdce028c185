using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Rcmha;

/// <summary>
/// What a shipped RCMHA checkpoint was made for: the variant, the backbone, the corpus and the training budget.
/// <see cref="CheckpointStore.Load"/> compares it field by field with the manifest's, so an RMHA file cannot be read into the RCMHA
/// model and a file trained at another size or budget is refused (the experiment then trains here, and says so).
/// </summary>
public sealed record RcmhaModelConfig(string Variant, bool Conv, bool Relative, int Layers, int DModel, int Heads, double MlpRatio, int Kernel,
    int SeqLen, int Steps, int BatchSize, double LearningRate, int WarmupSteps, string Corpus);

/// <summary>
/// The four shipped char-LM models of the P24 notebook at smoke size (one file per variant), trained by the committed recipe
/// lib/AttentionLab.Checkpoints/RcmhaRecipe.cs with <see cref="RcmhaExperiment.Train"/> — the loop and batches the experiment uses
/// when it trains here.
/// </summary>
public static class RcmhaCheckpoint
{
    /// <summary>The recipe's name on the command line.</summary>
    public const string Recipe = "rcmha";

    /// <summary>The manifest name of <paramref name="variant"/>'s checkpoint.</summary>
    public static string Name(RcmhaVariant variant) => "rcmha-charlm-" + Key(variant);

    /// <summary>The command-line key of a variant (mha, mdha, rmha, rcmha).</summary>
    public static string Key(RcmhaVariant variant) => (variant ?? throw new ArgumentNullException(nameof(variant))).Name.ToLowerInvariant();

    /// <summary>The variant of a command-line key, or null.</summary>
    public static RcmhaVariant? FromKey(string key) => RcmhaVariant.All.FirstOrDefault(v => Key(v) == key);

    /// <summary>The committed command that regenerates <paramref name="variant"/>'s checkpoint.</summary>
    public static string Command(RcmhaVariant variant, int steps, int seed = 0) =>
        $"dotnet run --project lib/AttentionLab.Checkpoints -c Release -- {Recipe} {Key(variant)} --steps {steps} --seed {seed}";

    /// <summary>Loads <paramref name="variant"/>'s checkpoint into a fresh model of <paramref name="config"/> (config checked against the manifest).</summary>
    public static (TinyGpt Model, CheckpointEntry Entry) Load(RcmhaVariant variant, RcmhaExperiment.Config config, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        var built = RcmhaExperiment.Build(variant, config, config.Seed);
        try
        {
            var entry = CheckpointStore.Default().Load(built, Name(variant), config.ModelConfig(variant));
            if (device is not null) built.to(device);
            built.eval();
            return (built, entry);
        }
        catch
        {
            built.Dispose();
            throw;
        }
    }
}
