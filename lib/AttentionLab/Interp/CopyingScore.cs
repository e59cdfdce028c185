using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Interp;

/// <summary>
/// The OV-circuit copying score of Elhage et al. (2021, "A Mathematical Framework for Transformer Circuits"): for a head's
/// full OV circuit M = W_E W_V^h W_O^h W_U [V, V] (token in → logit out, LayerNorms ignored), the score is
/// Σ_i λ_i / Σ_i |λ_i| over M's eigenvalues: 1 for a head that raises the logit of the token it attends to (copying),
/// −1 for one that lowers it, near 0 for neither. A pattern-free head role for the heads atlas.
/// </summary>
public static class CopyingScore
{
    /// <summary>Σ λ / Σ |λ| of a square matrix (the real part of the sum; NaN when every eigenvalue is 0 or an entry is NaN).</summary>
    public static double Of(Tensor circuit)
    {
        Guard.Rank(circuit, 2, nameof(circuit), "V, V");
        if (circuit.size(0) != circuit.size(1)) throw new ArgumentException($"the circuit must be square, got {Guard.ShapeText(circuit)}.", nameof(circuit));
        using var scope = NewDisposeScope();
        var m = circuit.detach().to(ScalarType.Float64).cpu();
        if (m.isnan().any().item<bool>()) return double.NaN;
        var lambda = torch.linalg.eigvals(m);                                                    // complex [V]
        double sum = lambda.sum().real.item<double>();
        double abs = lambda.abs().sum().item<double>();
        return abs == 0 ? double.NaN : sum / abs;
    }

    /// <summary>The full OV circuit of head <paramref name="head"/> in block <paramref name="layer"/>: W_E W_V^h W_O^h W_U [V, V].</summary>
    public static Tensor Circuit(TinyGpt model, int layer, int head)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (layer < 0 || layer >= model.LayerCount) throw new ArgumentOutOfRangeException(nameof(layer), layer,
            $"layer must be in 0 … {model.LayerCount - 1}.");
        if (head < 0 || head >= model.HeadCount) throw new ArgumentOutOfRangeException(nameof(head), head, $"head must be in 0 … {model.HeadCount - 1}.");
        var mixer = model.Blocks[layer].Mixer as AttentionMixer
            ?? throw new ArgumentException($"block {layer}'s mixer {model.Blocks[layer].Mixer.GetType().Name} has no OV circuit.", nameof(layer));
        var (wU, _) = model.Unembedding ?? throw new ArgumentException("the model has continuous outputs, not token logits.", nameof(model));
        if (model.Embed is not TorchSharp.Modules.Embedding embedding)
            throw new ArgumentException("the model has continuous inputs, not token embeddings.", nameof(model));
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        return embedding.weight!.matmul(mixer.OV[head]).matmul(wU).MoveToOuterDisposeScope();
    }

    /// <summary>The copying score of every head [L, H] (NaN for a block whose mixer has no OV circuit).</summary>
    public static double[,] Heads(TinyGpt model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var scores = new double[model.LayerCount, model.HeadCount];
        for (int l = 0; l < model.LayerCount; l++)
            for (int h = 0; h < model.HeadCount; h++)
            {
                if (model.Blocks[l].Mixer is not AttentionMixer) { scores[l, h] = double.NaN; continue; }
                using var circuit = Circuit(model, l, h);
                scores[l, h] = Of(circuit);
            }
        return scores;
    }
}
