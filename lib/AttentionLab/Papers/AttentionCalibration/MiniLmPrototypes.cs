using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.AttentionCalibration;

/// <summary>
/// Zero-shot nearest-prototype classification with <see cref="MiniLm"/> (spec §4b): embedding = mean-pooled, L2-normalised
/// last_hidden_state; the class is the prototype sentence with the largest cosine. Sentences are grouped by token length and run
/// unpadded through <see cref="IHookedModel.Run"/>, so every query sees only real tokens and ACT's ā_j (mean over the T queries)
/// needs no padding mask; hooks on the model (ACT) apply to the prototypes too.
/// </summary>
public sealed class MiniLmPrototypes : IDisposable
{
    readonly MiniLm model;
    readonly List<(Tensor Ids, int[] Labels)> buckets = new();
    readonly List<(Tensor Ids, int[] Index)> prototypes = new();

    /// <summary>Tokenises <paramref name="texts"/> and the prototypes once.</summary>
    public MiniLmPrototypes(MiniLm model, IReadOnlyList<string> texts, IReadOnlyList<int> labels, IReadOnlyList<string> prototypeTexts)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentNullException.ThrowIfNull(labels);
        if (texts.Count != labels.Count) throw new ArgumentException($"{texts.Count} texts but {labels.Count} labels.", nameof(labels));
        this.model = model;
        Count = texts.Count;
        foreach (var (ids, idx) in Group(texts)) buckets.Add((ids, idx.Select(i => labels[i]).ToArray()));
        prototypes.AddRange(Group(prototypeTexts));
    }

    /// <summary>Sentences held.</summary>
    public int Count { get; }

    List<(Tensor, int[])> Group(IReadOnlyList<string> texts)
    {
        using var enc = model.Tokenize(texts);
        var rows = enc.Ids.Select((ids, i) => (Ids: ids.Select(x => (long)x).ToArray(), Index: i)).ToList();
        return rows.GroupBy(r => r.Ids.Length).OrderBy(g => g.Key).Select(g =>
        {
            var ids = torch.tensor(g.SelectMany(r => r.Ids).ToArray(), new long[] { g.Count(), g.Key }, device: model.Device).DetachFromDisposeScope();
            return (ids, g.Select(r => r.Index).ToArray());
        }).ToList();
    }

    Tensor Embed(Tensor ids) => nn.functional.normalize(((IHookedModel)model).Run(ids).mean(new long[] { 1 }), p: 2, dim: 1);

    /// <summary>Share of sentences whose nearest prototype is their label, under whatever hooks the model carries now.</summary>
    public double Accuracy()
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var protoRows = new Tensor[prototypes.Sum(p => p.Index.Length)];
        foreach (var (ids, index) in prototypes)
        {
            var e = Embed(ids);
            for (int k = 0; k < index.Length; k++) protoRows[index[k]] = e[k];
        }
        var protos = torch.stack(protoRows);                                            // [C, D]
        long correct = 0;
        foreach (var (ids, labels) in buckets)
        {
            var predicted = Embed(ids).matmul(protos.t()).argmax(-1).cpu().data<long>().ToArray();
            for (int k = 0; k < labels.Length; k++) correct += predicted[k] == labels[k] ? 1 : 0;
        }
        return correct / (double)Count;
    }

    public void Dispose()
    {
        foreach (var b in buckets) b.Ids.Dispose();
        foreach (var p in prototypes) p.Ids.Dispose();
        buckets.Clear();
        prototypes.Clear();
    }
}
