using AttentionLab.Attention;
using AttentionLab.Data;
using AttentionLab.Models;
using static TorchSharp.torch;

namespace AttentionLab.Papers.LandmarkAttention;

/// <summary>
/// A small landmark LM: a <see cref="TinyGpt"/> (pre-norm, GELU MLP) whose every mixer is a
/// <see cref="LandmarkAttentionLayer"/> with RoPE, over the task's vocabulary plus one landmark token (id = TaskVocab).
/// </summary>
public sealed record LandmarkLmConfig(int Layers = 2, int DModel = 64, int Heads = 4, int TaskVocab = 32, int BlockSize = 8,
    double RopeBase = 10000, double MlpRatio = 4)
{
    /// <summary>The landmark token's id (one past the task's vocabulary).</summary>
    public long LandmarkId => TaskVocab;

    /// <summary>The TinyGpt shape (VocabSize = TaskVocab + 1; RoPE is applied inside the landmark mixers).</summary>
    public TinyGptConfig Gpt => new(Layers: Layers, DModel: DModel, Heads: Heads, MlpRatio: MlpRatio, VocabSize: TaskVocab + 1,
        Positions: PositionKind.Rope, RopeBase: RopeBase);

    /// <summary>A freshly initialised model (seed torch before calling for reproducible weights).</summary>
    public TinyGpt Build()
    {
        Gpt.Validate();
        return new TinyGpt(Gpt, _ => new LandmarkAttentionLayer(DModel, Heads, BlockSize, rope: true, ropeBase: RopeBase));
    }
}

/// <summary>Passkey batches with landmarks inserted, shared by the checkpoint recipe, the experiment and the tests.</summary>
public static class LandmarkPasskey
{
    /// <summary>
    /// <paramref name="count"/> passkey sequences of <paramref name="length"/> ordinary tokens at needle depth
    /// <paramref name="depth"/>, with a landmark after every ℓ_b tokens (labels −100 there).
    /// </summary>
    public static TokenBatch Batch(LandmarkLmConfig model, int length, int needleLength, double depth, int count, int seed, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var raw = new PasskeyTask(VocabSize: model.TaskVocab, Length: length, NeedleLength: needleLength, Depth: depth).Generate(count, seed, device);
        using var scope = NewDisposeScope();
        var (ids, _) = LandmarkTokens.Insert(raw.Tokens, model.BlockSize, model.LandmarkId);
        var labels = LandmarkTokens.InsertLabels(raw.Labels, model.BlockSize);
        return new TokenBatch(ids, labels);
    }

    /// <summary>Needle depth of training step <paramref name="step"/>: uniform in [0, 1] from a seeded stream.</summary>
    public static double TrainDepth(int seed, int step) => new Random(seed * 7919 + step).NextDouble();

    /// <summary>The training loss of one step: a fresh batch at a random depth, cross-entropy on the answer digits.</summary>
    public static Tensor TrainLoss(TinyGpt model, LandmarkLmConfig config, int length, int needleLength, int batch, int seed, int step)
    {
        using var data = Batch(config, length, needleLength, TrainDepth(seed, step), batch, seed * 1_000_003 + step);
        return data.Loss(model.call(data.Tokens));
    }
}
