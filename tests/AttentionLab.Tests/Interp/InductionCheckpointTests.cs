using System.Text.Json;
using AttentionLab.Checkpoints;
using AttentionLab.Data;
using AttentionLab.Interp;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Interp;

/// <summary>
/// The shipped induction checkpoint (data/models/induction-2l-attn-only.bin, trained by <see cref="InductionRecipe"/>):
/// HeadDetector finds its previous-token head in layer 0 and its induction heads in layer 1 on fresh data, and the
/// circuit is the one the model uses — knocking out that attention, or ablating those heads, removes the copying.
/// </summary>
public class InductionCheckpointTests(ITestOutputHelper output)
{
    const int BatchSeed = 2024;     // fresh sequences: training used seeds 0 … 999, its evaluation −1

    static TinyGpt LoadShipped(out CheckpointEntry entry)
    {
        var store = CheckpointStore.Default();                                        // data/models/ above the test's bin folder
        var config = JsonSerializer.Deserialize<TinyGptConfig>(store.Find(InductionRecipe.Name)?.Config.GetRawText()
            ?? throw new FileNotFoundException($"no '{InductionRecipe.Name}' in {store.Folder}"))!;
        var model = new TinyGpt(config);
        entry = store.Load(model, InductionRecipe.Name);                              // verifies the sha256 first
        model.eval();
        return model;
    }

    static TokenBatch FreshBatch() => InductionRecipe.Task.Generate(256, BatchSeed);

    /// <summary>Scores of a head that attends uniformly to every visible key: the chance level of a pattern on these tokens.</summary>
    static double UniformScore(Tensor tokens, HeadPattern kind)
    {
        using var scope = NewDisposeScope();
        long b = tokens.shape[0], t = tokens.shape[1];
        var visible = torch.ones(t, t).tril();
        var uniform = (visible / visible.sum(-1, keepdim: true)).expand(b, 1, t, t);  // A_ij = 1/(i+1), j ≤ i
        return HeadDetector.Score(uniform, HeadDetector.DetectionPattern(tokens, kind)).item<float>();
    }

    static string Row(Tensor scores) => string.Join(" ", scores.data<float>().ToArray().Select(v => v.ToString("F3")));

    [Fact]
    public void TheShippedCheckpointIsTheRecipesModelAndLoadsWithItsDigest()
    {
        using var model = LoadShipped(out var entry);
        Assert.Equal(InductionRecipe.Config, JsonSerializer.Deserialize<TinyGptConfig>(entry.Config.GetRawText()));
        Assert.Equal($"dotnet run --project lib/AttentionLab.Checkpoints -c Release -- induction --steps {entry.Steps} --seed {entry.Seed}", entry.Command);
        Assert.Equal(64, entry.Sha256.Length);
        Assert.Equal(CheckpointStore.Digest(Path.Combine(CheckpointStore.Default().Folder, entry.File)), entry.Sha256);
    }

    [Fact]
    public void HeadDetectorFindsThePreviousTokenHeadInLayer0AndTheInductionHeadsInLayer1()
    {
        using var model = LoadShipped(out _);
        using var batch = FreshBatch();
        using var scope = NewDisposeScope();
        var previous = HeadDetector.Detect(model, batch.Tokens, HeadPattern.PreviousToken);   // [L, H]
        var induction = HeadDetector.Detect(model, batch.Tokens, HeadPattern.Induction);
        double chancePrevious = UniformScore(batch.Tokens, HeadPattern.PreviousToken), chanceInduction = UniformScore(batch.Tokens, HeadPattern.Induction);
        output.WriteLine($"previous-token L0 {Row(previous[0])} | L1 {Row(previous[1])}  (uniform head {chancePrevious:F3})");
        output.WriteLine($"induction      L0 {Row(induction[0])} | L1 {Row(induction[1])}  (uniform head {chanceInduction:F3})");

        // Layer 0: one previous-token head, well ahead of every other head of the model.
        int prevHead = (int)previous[0].argmax().item<long>();
        double prevScore = previous[0, prevHead].item<float>();
        var others = previous.flatten().data<float>().ToArray().Where((_, i) => i != prevHead).Max();
        Assert.True(prevScore >= 0.5, $"best previous-token score in layer 0 is {prevScore:F3} (measured 0.71 at shipping)");
        Assert.True(prevScore - others >= 0.25, $"previous-token head L0H{prevHead} {prevScore:F3} leads the next head ({others:F3}) by less than 0.25");

        // Layer 1: induction heads. Every layer-1 head of this checkpoint is one (redundant copies of the same circuit),
        // so the margin is over layer 0 and over a uniform head, not between layer-1 heads.
        double weakestInduction = induction[1].min().item<float>(), layer0Induction = induction[0].max().item<float>();
        int inductionHead = (int)induction[1].argmax().item<long>();
        Assert.True(weakestInduction >= 0.35, $"weakest layer-1 induction score {weakestInduction:F3} (measured ≥ 0.48 at shipping)");
        Assert.True(weakestInduction - layer0Induction >= 0.3, $"layer-1 induction {weakestInduction:F3} vs layer 0's best {layer0Induction:F3}");
        Assert.True(induction[1, inductionHead].item<float>() >= 5 * chanceInduction, $"induction L1H{inductionHead} vs a uniform head's {chanceInduction:F3}");
        Assert.True(previous[1].max().item<float>() <= 2 * chancePrevious, "layer-1 heads are not previous-token heads");
    }

    [Fact]
    public void KnockingOutTheDetectedAttentionRemovesTheCopying()
    {
        // The first recipe's model copied with 99.5 % accuracy while attending *away* from these entries; knocking
        // them out there changed nothing. Here the copy must travel through them.
        using var model = LoadShipped(out _);
        using var batch = FreshBatch();
        using var scope = NewDisposeScope();
        double clean = Accuracy(model, batch);
        double withoutInduction = KnockedOut(model, batch, layer: 1, HeadDetector.DetectionPattern(batch.Tokens, HeadPattern.Induction));
        double withoutPrevious = KnockedOut(model, batch, layer: 0, HeadDetector.DetectionPattern(batch.Tokens, HeadPattern.PreviousToken));
        output.WriteLine(
            $"copy accuracy {clean:F3}; layer-1 attention on the induction pattern removed {withoutInduction:F3}; layer-0 attention on the previous token " +
            $"removed {withoutPrevious:F3}");
        Assert.True(clean >= 0.85, $"copy accuracy {clean:F3} (measured 0.94 at shipping)");
        Assert.True(withoutInduction <= 0.2, $"without layer-1 induction attention the accuracy is still {withoutInduction:F3}");
        Assert.True(withoutPrevious <= 0.2, $"without layer-0 previous-token attention the accuracy is still {withoutPrevious:F3}");
    }

    [Fact]
    public void AblatingTheDetectedHeadsDropsCopyAccuracy()
    {
        using var model = LoadShipped(out _);
        using var batch = FreshBatch();
        using var scope = NewDisposeScope();
        var previous = HeadDetector.Detect(model, batch.Tokens, HeadPattern.PreviousToken);
        var induction = HeadDetector.Detect(model, batch.Tokens, HeadPattern.Induction);
        int prevHead = (int)previous[0].argmax().item<long>(), inductionHead = (int)induction[1].argmax().item<long>();
        double clean = Accuracy(model, batch);
        double noPrevHead = AccuracyWith(model, batch, Ablation.ZeroHead(model, 0, prevHead));
        double noInductionHead = AccuracyWith(model, batch, Ablation.ZeroHead(model, 1, inductionHead));
        double noLayer1Heads = AccuracyWith(model, batch, Enumerable.Range(0, model.HeadCount).Select(h => Ablation.ZeroHead(model, 1, h)).ToArray());
        output.WriteLine(
            $"copy accuracy {clean:F3}; L0H{prevHead} (previous-token) zeroed {noPrevHead:F3}; L1H{inductionHead} (best induction) zeroed " +
            $"{noInductionHead:F3}; all layer-1 heads zeroed {noLayer1Heads:F3}");
        Assert.True(clean - noPrevHead >= 0.3, $"zeroing the previous-token head L0H{prevHead}: {clean:F3} → {noPrevHead:F3}");
        Assert.True(clean - noLayer1Heads >= 0.6, $"zeroing the layer-1 induction heads: {clean:F3} → {noLayer1Heads:F3}");
        // One layer-1 head alone matters little: the other three carry the same circuit (measured 0.94 → 0.90).
        Assert.True(clean - noInductionHead >= 0.02, $"zeroing the best induction head L1H{inductionHead}: {clean:F3} → {noInductionHead:F3}");
    }

    static double Accuracy(TinyGpt model, TokenBatch batch)
    {
        using var noGrad = torch.no_grad();
        using var logits = model.call(batch.Tokens);
        return batch.Accuracy(logits);
    }

    static double AccuracyWith(TinyGpt model, TokenBatch batch, params (string Name, Func<Tensor, HookPoint, Tensor?> Fn)[] hooks)
    {
        using var noGrad = torch.no_grad();
        using var logits = model.RunWithHooks(batch.Tokens, hooks);
        return batch.Accuracy(logits);
    }

    /// <summary>Accuracy with layer <paramref name="layer"/>'s attention on the detection pattern P removed: A' = A ⊙ (1 − P) / Σ_j A ⊙ (1 − P).</summary>
    static double KnockedOut(TinyGpt model, TokenBatch batch, int layer, Tensor pattern)
    {
        var keep = (1 - pattern).unsqueeze(1);                                         // [B, 1, T, T]
        return AccuracyWith(model, batch, (ActName.Get("pattern", layer), (a, _) =>
        {
            var kept = a * keep;
            return kept / kept.sum(-1, keepdim: true).clamp_min(1e-12);
        }));
    }
}
