using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Interp;

/// <summary>
/// The succession score of Gould et al. (2023, "Successor Heads: Recurring, Interpretable Attention Heads In The Wild",
/// arXiv 2312.09230) on a head's OV circuit: over an ordinal sequence of tokens o_0 … o_{n−1} (a … z, 0 … 9), the share of
/// o_i (i &lt; n − 1) whose circuit row, read only at the ordinal tokens, is largest at o_{i+1}. A successor head maps "Monday"
/// to "Tuesday"; chance is 1/(n − 1) for an uninformative circuit.
/// </summary>
/// <remarks>The paper reads the circuit from the effective embedding (the output of MLP 0); this score reads it from the token
/// embedding (<see cref="CopyingScore.Circuit"/>), which is the same for attention-only models and ignores MLP 0 otherwise.</remarks>
public static class SuccessorScore
{
    /// <summary>The share of i &lt; n − 1 with argmax_j circuit[o_i, o_j] = i + 1 (first index on ties); NaN when a row holds NaN.</summary>
    public static double Of(Tensor circuit, IReadOnlyList<long> ordinal)
    {
        Guard.Rank(circuit, 2, nameof(circuit), "V, V");
        ArgumentNullException.ThrowIfNull(ordinal);
        if (ordinal.Count < 2) throw new ArgumentException($"ordinal needs at least 2 tokens, got {ordinal.Count}.", nameof(ordinal));
        long v = circuit.size(0);
        if (circuit.size(1) != v) throw new ArgumentException($"the circuit must be square, got {Guard.ShapeText(circuit)}.", nameof(circuit));
        if (ordinal.Any(t => t < 0 || t >= v)) throw new ArgumentException($"ordinal tokens must lie in 0 … {v - 1}.", nameof(ordinal));
        if (ordinal.Distinct().Count() != ordinal.Count) throw new ArgumentException("ordinal tokens must be distinct.", nameof(ordinal));
        using var scope = NewDisposeScope();
        var index = torch.tensor(ordinal.ToArray(), device: circuit.device);
        var block = circuit.detach().index_select(0, index).index_select(1, index).to(ScalarType.Float64).cpu();   // [n, n]
        if (block.isnan().any().item<bool>()) return double.NaN;
        var top = block.argmax(1).data<long>().ToArray();
        int hits = 0;
        for (int i = 0; i < ordinal.Count - 1; i++)
            if (top[i] == i + 1) hits++;
        return hits / (double)(ordinal.Count - 1);
    }

    /// <summary>The succession score of every head [L, H] (NaN for a block whose mixer has no OV circuit).</summary>
    public static double[,] Heads(TinyGpt model, IReadOnlyList<long> ordinal)
    {
        ArgumentNullException.ThrowIfNull(model);
        var scores = new double[model.LayerCount, model.HeadCount];
        for (int l = 0; l < model.LayerCount; l++)
            for (int h = 0; h < model.HeadCount; h++)
            {
                if (model.Blocks[l].Mixer is not AttentionMixer) { scores[l, h] = double.NaN; continue; }
                using var circuit = CopyingScore.Circuit(model, l, h);
                scores[l, h] = Of(circuit, ordinal);
            }
        return scores;
    }
}
