using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// What one <see cref="MiniLm"/> pass produced. Owns every tensor (they belong to no dispose scope): dispose it.
/// Positions where <see cref="AttentionMask"/> is 0 are padding; their rows are computed but mean nothing.
/// </summary>
public sealed class MiniLmOutput : IDisposable
{
    internal MiniLmOutput(Tensor lastHiddenState, Tensor poolerOutput, Tensor sentenceEmbedding, Tensor attentionMask,
                          IReadOnlyList<Tensor> attentions, IReadOnlyList<Tensor> hiddenStates, IReadOnlyList<IReadOnlyList<string>>? tokens)
    {
        LastHiddenState = lastHiddenState; PoolerOutput = poolerOutput; SentenceEmbedding = sentenceEmbedding;
        AttentionMask = attentionMask; Attentions = attentions; HiddenStates = hiddenStates; Tokens = tokens;
    }

    /// <summary>[B, T, D]: the encoder output (ONNX output "last_hidden_state").</summary>
    public Tensor LastHiddenState { get; }
    /// <summary>[B, D]: tanh(W h_[CLS] + b), BERT's pooler (the ONNX graph's second output).</summary>
    public Tensor PoolerOutput { get; }
    /// <summary>[B, D]: mean of LastHiddenState over real tokens, L2-normalised — the SentenceTransformers embedding.</summary>
    public Tensor SentenceEmbedding { get; }
    /// <summary>[B, T] int64: 1 = token, 0 = padding.</summary>
    public Tensor AttentionMask { get; }
    /// <summary>Per layer, the attention probabilities [B, H, Tq, Tk] (rows sum to 1; padding keys get 0). Empty unless captured.</summary>
    public IReadOnlyList<Tensor> Attentions { get; }
    /// <summary>L + 1 tensors [B, T, D]: the embedding output, then each layer's output (as Hugging Face's hidden_states). Empty unless captured.</summary>
    public IReadOnlyList<Tensor> HiddenStates { get; }
    /// <summary>WordPiece tokens per text when the run started from text; null for a run on ids.</summary>
    public IReadOnlyList<IReadOnlyList<string>>? Tokens { get; }

    public void Dispose()
    {
        LastHiddenState.Dispose(); PoolerOutput.Dispose(); SentenceEmbedding.Dispose(); AttentionMask.Dispose();
        foreach (var t in Attentions) t.Dispose();
        foreach (var t in HiddenStates) t.Dispose();
    }
}
