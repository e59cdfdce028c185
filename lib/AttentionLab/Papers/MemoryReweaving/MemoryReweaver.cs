using AttentionLab.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.MemoryReweaving;

/// <summary>
/// [ours] The reconstruct-and-reweave module of spec §2 at the target layer L*: per-source projections of the buffered states,
/// the λ-mixed read (<see cref="MemoryReweavingOps.Read"/>), and the gated write back into the residual stream.
/// </summary>
/// <remarks>
/// q_t = W_q h_t;  k_s^ℓ = W_k^ℓ h_s^ℓ,  v_s^ℓ = W_v^ℓ h_s^ℓ                 (heads of width d/H)
/// m_t = Σ_ℓ λ_ℓ Attn_ℓ(q_t, B_t^ℓ),  λ = softmax(w_λ)                    (<see cref="MemoryReweavingOps.Read"/>)
/// g_t = σ(W_g [h_t; m_t] + b_g),  b_g initialised to <see cref="GateBiasInit"/> (negative: the gate starts mostly closed)
/// reweave term r_t = g_t ⊙ W_o m_t   (the mixer adds it to its output, so h_t ← h_t + … + r_t in the block's residual)
/// Gate closed (b_g = −∞) ⇒ r_t = 0 exactly and the layer is its backbone.
/// </remarks>
public sealed class MemoryReweaver : nn.Module
{
    readonly Linear wq, wo, gate;
    readonly ModuleList<Linear> wk, wv;
    readonly Parameter lambda_logits;

    /// <summary>b_g at initialisation.</summary>
    public const double GateBiasInit = -2.0;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H of the memory read (divides d).</param>
    /// <param name="targetLayer">L*: the layer whose mixer holds this module.</param>
    /// <param name="sourceLayers">𝓛: every source layer runs before or at L*.</param>
    public MemoryReweaver(int dModel, int heads, int targetLayer, int[] sourceLayers) : base(nameof(MemoryReweaver))
    {
        Guard.Positive(dModel, nameof(dModel));
        Guard.Positive(heads, nameof(heads));
        if (dModel % heads != 0) throw new ArgumentException($"heads {heads} must divide dModel {dModel}.", nameof(heads));
        ArgumentNullException.ThrowIfNull(sourceLayers);
        if (sourceLayers.Length == 0) throw new ArgumentException("sourceLayers must name at least one layer.", nameof(sourceLayers));
        if (targetLayer < 0) throw new ArgumentException($"targetLayer must be ≥ 0, got {targetLayer}.", nameof(targetLayer));
        if (sourceLayers.Any(l => l < 0 || l > targetLayer))
            throw new ArgumentException($"sourceLayers must lie in 0 … targetLayer = {targetLayer}, got [{string.Join(", ", sourceLayers)}].",
                nameof(sourceLayers));
        (DModel, Heads, TargetLayer, SourceLayers) = (dModel, heads, targetLayer, sourceLayers.ToArray());
        wq = nn.Linear(dModel, dModel, hasBias: false);
        wk = new ModuleList<Linear>(sourceLayers.Select(_ => nn.Linear(dModel, dModel, hasBias: false)).ToArray());
        wv = new ModuleList<Linear>(sourceLayers.Select(_ => nn.Linear(dModel, dModel, hasBias: false)).ToArray());
        wo = nn.Linear(dModel, dModel, hasBias: false);
        gate = nn.Linear(2 * dModel, dModel);
        lambda_logits = nn.Parameter(torch.zeros(sourceLayers.Length));
        using (torch.no_grad()) gate.bias!.fill_(GateBiasInit);
        RegisterComponents();
    }

    public int DModel { get; }
    public int Heads { get; }
    /// <summary>L*.</summary>
    public int TargetLayer { get; }
    /// <summary>𝓛.</summary>
    public IReadOnlyList<int> SourceLayers { get; }
    /// <summary>w_λ [|𝓛|].</summary>
    public Parameter LambdaLogits => lambda_logits;
    /// <summary>W_g (bias b_g).</summary>
    public Linear Gate => gate;
    /// <summary>λ = softmax(w_λ) as numbers.</summary>
    public double[] Lambda() { using var l = lambda_logits.detach().softmax(0).to(ScalarType.Float64).cpu(); return l.data<double>().ToArray(); }

    /// <summary>Closes the gate for good (b_g = −∞, W_g = 0): the reweave term is then exactly 0.</summary>
    public void CloseGate()
    {
        using var noGrad = torch.no_grad();
        gate.weight!.zero_();
        gate.bias!.fill_(double.NegativeInfinity);
    }

    /// <summary>Keep the buffer weights of the last call (<see cref="LastWeights"/>); off by default.</summary>
    public bool KeepWeights { get; set; }

    /// <summary>The last call's buffer weights [B, H, T, T] per source layer (detached), while <see cref="KeepWeights"/> is on.</summary>
    public Tensor[]? LastWeights { get; private set; }

    /// <summary>
    /// The reweave term r = g ⊙ W_o m [B, T, d] for the target layer's states h [B, T, d], reading the source layers' states
    /// in <paramref name="buffer"/>.
    /// </summary>
    public Tensor Reweave(Tensor h, LayeredStateBuffer buffer)
    {
        Guard.Rank(h, 3, nameof(h), "B, T, d");
        ArgumentNullException.ThrowIfNull(buffer);
        using var scope = NewDisposeScope();
        long b = h.size(0), t = h.size(1);
        int dh = DModel / Heads;
        Tensor Split(Tensor x) => x.view(b, t, Heads, dh);
        var q = Split(wq.call(h));                                                          // q_t = W_q h_t
        var keys = new List<Tensor>();
        var values = new List<Tensor>();
        for (int l = 0; l < SourceLayers.Count; l++)
        {
            var hl = buffer.States(SourceLayers[l], h);                                     // h^ℓ of every position
            keys.Add(Split(wk[l].call(hl)));                                                 // k^ℓ = W_k^ℓ h^ℓ
            values.Add(Split(wv[l].call(hl)));                                               // v^ℓ = W_v^ℓ h^ℓ
        }
        var (m, weights) = MemoryReweavingOps.Read(q, keys, values, lambda_logits, buffer.Window, buffer.Capacity);
        if (LastWeights is { } old) foreach (var w in old) w.Dispose();
        LastWeights = KeepWeights ? weights.Select(w => w.detach().clone().DetachFromDisposeScope()).ToArray() : null;
        var mFlat = m.reshape(b, t, DModel);
        var g = torch.sigmoid(gate.call(torch.cat(new[] { h, mFlat }, -1)));                // g_t = σ(W_g [h_t; m_t] + b_g)
        return (g * wo.call(mFlat)).MoveToOuterDisposeScope();                              // g_t ⊙ W_o m_t
    }
}
