using AttentionLab.Attention;
using AttentionLab.Models;
using AttentionLab.Papers.Hcam;
using AttentionLab.Papers.MemoryReweaving;
using AttentionLab.Papers.Miras;
using AttentionLab.Papers.SynapticResonance;
using AttentionLab.Papers.Titans;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Atlas;

/// <summary>What the memory atlas tells a mixer when it builds it: width, heads, the attention window the memories are
/// compared beyond, the sequence length, the memory's architecture and the chunk of its chunked (training) form.</summary>
/// <param name="DModel">d.</param>
/// <param name="Heads">H (divides d).</param>
/// <param name="Window">n: keys of every local attention (SWA, Titans' window, MAC's segment, HCAM's local window).</param>
/// <param name="SeqLen">T of the task (HCAM's counted state needs it).</param>
/// <param name="Memory">linear (smoke) or MLP (full) memory per head.</param>
/// <param name="ChunkSize">tokens per chunk of the memories' chunked training form.</param>
public sealed record MemoryShape(int DModel, int Heads, int Window, int SeqLen, MemoryArchitecture Memory, int ChunkSize);

/// <summary>Whether a point is a baseline the memories are measured against or a test-time memory.</summary>
public enum MemoryRole
{
    /// <summary>Softmax, sliding-window or linear attention.</summary>
    Baseline,
    /// <summary>A memory written at test time (Titans, Miras, HCAM, …).</summary>
    Memory,
}

/// <summary>
/// One point of the memory atlas: a name, its family (plot colour), its role, how to build it from the atlas's
/// <see cref="MemoryShape"/>, and how its decode step is checked and its state measured.
/// </summary>
/// <param name="Name">The point's label (its claim id is <see cref="AtlasResult.Slug"/> of it).</param>
/// <param name="Family">The plots' colour group.</param>
/// <param name="Role">Baseline or memory.</param>
/// <param name="Build">shape → the mixer trained in layer 1 of the TinyGpt (layer 0 is BASED's short conv, as in atlas 90).</param>
/// <param name="ExactTwin">For a mixer whose training forward is an approximation of its recurrence (the memories' chunked form:
/// gradients of a chunk taken at the chunk's start memory), the same mixer with the exact token-recurrent forward: the trained
/// weights are loaded into it and its forward is what Step must reproduce. Null: Step must reproduce the trained forward itself.</param>
/// <param name="CountedStateBytes">For a mixer that cannot stream: shape → the bytes its decode state would hold after T tokens
/// (by the paper's formula); null streams the model and measures the state.</param>
public sealed record MemoryMixer(string Name, string Family, MemoryRole Role, Func<MemoryShape, nn.Module<Tensor, Tensor>> Build,
    Func<MemoryShape, nn.Module<Tensor, Tensor>>? ExactTwin = null, Func<MemoryShape, long>? CountedStateBytes = null);

/// <summary>
/// The memory atlas's mixers: the baselines (softmax attention, sliding-window attention, the linear-attention engine plain and
/// gated) and the memories of issue 12 (Titans LMM/MAG/MAL/MAC, Miras Moneta/Yaad/Memora/ℓ2, HCAM). A new memory joins the
/// atlas as one entry here: a static member returning a <see cref="MemoryMixer"/>, added to <see cref="Smoke"/> and <see cref="Full"/>.
/// </summary>
public static class MemoryAtlasMixers
{
    /// <summary>Softmax attention: the KV cache grows with T.</summary>
    public static MemoryMixer Softmax { get; } = new("softmax attention", "full attention", MemoryRole.Baseline,
        s => new CausalSelfAttention(s.DModel, s.Heads));

    /// <summary>Exact softmax over the last n keys (n = the atlas's window).</summary>
    public static MemoryMixer SlidingWindow { get; } = new("sliding window", "sliding window", MemoryRole.Baseline,
        s => new SlidingWindowAttention(s.DModel, s.Heads, s.Window));

    /// <summary>The linear-attention engine without decay: S_t = S_{t−1} + k_t v_tᵀ, o_t = q_tᵀ S_t [ours: identity map, q scaled by 1/√D].</summary>
    public static MemoryMixer Linear { get; } = new("linear attention", "linear attention", MemoryRole.Baseline,
        s => new AtlasLinearAttention(s.DModel, s.Heads, gated: false));

    /// <summary>The engine with a per-token, per-head gate: S_t = e^{g_t} S_{t−1} + k_t v_tᵀ, g_t = logσ(x_t W_g + b)/16 (GLA's form).</summary>
    public static MemoryMixer GatedLinear { get; } = new("gated linear attention", "linear attention", MemoryRole.Baseline,
        s => new AtlasLinearAttention(s.DModel, s.Heads, gated: true));

    static TitansMemoryOptions TitansOptions(MemoryShape s, bool exact) => new()
    {
        Architecture = s.Memory, ChunkSize = s.ChunkSize, Form = exact ? TitansMemoryForm.Recurrent : TitansMemoryForm.Chunked,
        MaxLr = s.Memory == MemoryArchitecture.Mlp ? 0.1 : 0.5,                                    // Titans' full preset: 0.1 keeps the MLP finite
    };

    /// <summary>Titans' long-term memory alone (the paper's LMM): momentum, forgetting and per-token step size.</summary>
    public static MemoryMixer TitansLmm { get; } = new("Titans LMM", "Titans", MemoryRole.Memory,
        s => new TitansMemory(s.DModel, s.Heads, TitansOptions(s, exact: false)), s => new TitansMemory(s.DModel, s.Heads, TitansOptions(s, exact: true)));

    /// <summary>Titans MAG (window attention gated with the memory), MAL (memory then window attention) or MAC (memory as context of segments of n).</summary>
    public static MemoryMixer Titans(string variant) => new($"Titans {variant}", "Titans", MemoryRole.Memory,
        s => TitansExperiment.Variant(variant, s.DModel, s.Heads, s.Window, PersistentTokens, TitansOptions(s, exact: false)),
        s => TitansExperiment.Variant(variant, s.DModel, s.Heads, s.Window, PersistentTokens, TitansOptions(s, exact: true)));

    /// <summary>Titans' persistent tokens in MAG/MAL/MAC (the Titans notebook's smoke value).</summary>
    public const int PersistentTokens = 4;

    static MirasOptions MirasOptions(MemoryShape s, bool exact) => new()
    {
        Architecture = s.Memory, ChunkSize = s.ChunkSize, Form = exact ? MirasForm.Recurrent : MirasForm.Chunked,
    };

    /// <summary>A Miras model by name: "Moneta" (ℓ3 loss, ℓ4 retention), "Yaad" (Huber), "Memora" (KL retention) or "l2" (the ℓ2 baseline).</summary>
    public static MemoryMixer Miras(string name) => new(name == MirasExperiment.L2Name ? "Miras ℓ2" : name, "Miras", MemoryRole.Memory,
        s => MirasExperiment.Mixer(name, s.DModel, s.Heads, MirasOptions(s, exact: false)),
        s => MirasExperiment.Mixer(name, s.DModel, s.Heads, MirasOptions(s, exact: true)));

    /// <summary>
    /// HCAM: local attention over n keys plus a top-k read of the past chunks of C = n tokens. It has no decode form here, so its
    /// state is counted (<see cref="HcamMixer.StateBytes"/>: the stored activations, chunk summaries and the local window).
    /// </summary>
    public static MemoryMixer Hcam(int topK = 2) => new($"HCAM k={topK}", "HCAM", MemoryRole.Memory,
        s => new HcamMixer(s.DModel, s.Heads, chunkSize: s.Window, topK: topK, window: s.Window),
        CountedStateBytes: s =>
        {
            using var probe = new HcamMixer(s.DModel, s.Heads, chunkSize: s.Window, topK: topK, window: s.Window);
            return probe.StateBytes(s.SeqLen);
        });

    /// <summary>
    /// P32 Memory Reweaving [ours]: sliding-window attention over n keys plus the gated read of a FIFO buffer of the states that
    /// left the window (S = T − n slots), captured and reweaved in the mixer's own layer (the atlas has one mixer layer; the
    /// paper's notebook uses earlier source layers). No decode form, so its state is counted: the buffer's S·d floats and the
    /// window's n keys and values.
    /// </summary>
    public static MemoryMixer MemoryReweaving { get; } = new("Memory Reweaving [ours]", "Memory Reweaving", MemoryRole.Memory,
        s => new MemoryReweavingMixer(s.DModel, s.Heads, s.Window, layer: 1, ReweavingBuffer(s), targetLayer: 1),
        CountedStateBytes: s => ReweavingBuffer(s).Bytes(s.DModel) + 2L * s.Window * s.DModel * sizeof(float));

    static LayeredStateBuffer ReweavingBuffer(MemoryShape s) => new([1], Math.Max(1, s.SeqLen - s.Window), s.Window);

    /// <summary>
    /// P40 Synaptic Resonance [ours]: sliding-window attention over n keys plus a gated fast-weight memory read before its
    /// update. No decode form, so its state is counted (<see cref="SynapticResonanceLayer.StateBytes"/>: the window's keys and
    /// values, the fast weights S and the context trace).
    /// </summary>
    public static MemoryMixer SynapticResonance { get; } = new("Synaptic Resonance [ours]", "Synaptic Resonance", MemoryRole.Memory,
        s => new SynapticResonanceLayer(s.DModel, s.Heads, s.Window),
        CountedStateBytes: s => SynapticResonanceLayer.StateBytes(s.DModel, s.Heads, s.Window, resonance: true));

    /// <summary>The smoke set: the four baselines and one point per memory model.</summary>
    public static IReadOnlyList<MemoryMixer> Smoke { get; } = new[]
    {
        Softmax, SlidingWindow, Linear, GatedLinear,
        TitansLmm, Titans(TitansExperiment.MagName), Titans(TitansExperiment.MalName), Titans(TitansExperiment.MacName),
        Miras(MirasExperiment.MonetaName), Miras(MirasExperiment.YaadName), Miras(MirasExperiment.MemoraName),
        Hcam(), MemoryReweaving, SynapticResonance,
        // P48 (Bottlenecked Transformer) is not a mixer of one layer: its cache processor rewrites every layer's cache at step
        // boundaries (its own notebook measures it)
    };

    /// <summary>The full set: the smoke set plus Miras's ℓ2 baseline.</summary>
    public static IReadOnlyList<MemoryMixer> Full { get; } = Smoke.Append(Miras(MirasExperiment.L2Name)).ToArray();
}

/// <summary>
/// The linear-attention engine as a mixer for the memory atlas's baselines [ours]: identity feature map, unnormalised, q scaled by
/// 1/√D; gated, a per-token per-head log-decay from the input (GLA's gate).
/// </summary>
/// <remarks>
/// plain: S_t = S_{t−1} + k_t v_tᵀ,            o_t = (q_t/√D)ᵀ S_t
/// gated: S_t = e^{g_t} S_{t−1} + k_t v_tᵀ,    g_t = logσ(x_t W_g + b) / 16 ≤ 0   [B, T, H]   (GLA, Yang et al. 2024, §4.4)
/// The engine (<see cref="LinearAttention"/>) runs every form; decoding steps its stream with g_t from x_t.
/// </remarks>
public sealed class AtlasLinearAttention : LinearAttentionMixer
{
    readonly Linear? gate;

    /// <summary>GLA's gate temperature: g = logσ(·)/16 keeps early decays close to 1.</summary>
    public const double GateTemperature = 16;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H (divides d).</param>
    /// <param name="gated">true: a data-dependent gate per token and head; false: no decay.</param>
    public AtlasLinearAttention(int dModel, int heads, bool gated)
        : base(gated ? "GatedLinearAttention" : "PlainLinearAttention", dModel, heads,
            new LinearAttentionOptions { FeatureMap = FeatureMaps.Identity, Normalize = false, Scale = 1.0 / Math.Sqrt(dModel / heads), ChunkSize = 16 })
    {
        if (gated) gate = nn.Linear(dModel, heads);
        Gated = gated;
        RegisterComponents();
    }

    /// <summary>Whether the state decays with a per-token gate.</summary>
    public bool Gated { get; }

    protected override bool HasTokenGate => Gated;

    /// <summary>g = logσ(x W_g + b)/16 [B, T, H] (gated only).</summary>
    protected override Tensor? TokenLogDecay(Tensor x) => gate is null ? null : nn.functional.logsigmoid(gate.call(x)) / GateTemperature;
}
