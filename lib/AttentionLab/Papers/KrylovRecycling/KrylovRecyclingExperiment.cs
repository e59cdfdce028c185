using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.KrylovRecycling;

/// <summary>
/// P03 SKR: Krylov subspace recycling: the notebook's experiment (data, model, runs) on the paper contract.
/// STUB written by environment/tools/new-paper.sh: replace the stub phases with the spec's experiment (§4).
/// </summary>
public sealed class KrylovRecyclingExperiment : IPaperExperiment<KrylovRecyclingExperiment.Config, KrylovRecyclingResult>
{
    KrylovRecyclingExperiment() { }

    /// <summary>P03 in the catalogue (notebook notebooks/03-krylov-recycling.ipynb).</summary>
    public static PaperInfo Paper { get; } = new(3, "SKR: Krylov subspace recycling", "krylov-recycling");

    /// <summary>Sizes of one run: Smoke fits a CPU notebook in under a minute on one thread; Full is about 10 minutes on one GPU.</summary>
    public sealed record Config(int SeqLen, int Heads, int HeadDim, int Seed) : IPaperConfig<Config>
    {
        public static Config Smoke => new(SeqLen: 13, Heads: 2, HeadDim: 5, Seed: 0) { Size = "smoke" };
        public static Config Full => new(SeqLen: 4096, Heads: 8, HeadDim: 64, Seed: 0) { Size = "full" };

        /// <summary><see cref="Smoke"/> or <see cref="Full"/>.</summary>
        public static Config For(RunSize size) => size == RunSize.Full ? Full : Smoke;

        /// <summary>The label the claims are reported at: "smoke"/"full" for the presets; set it when you change one.</summary>
        public string Size { get; init; } = "custom";
    }

    /// <summary>Runs everything on <paramref name="device"/>, reporting one line per phase.</summary>
    public static KrylovRecyclingResult Run(Config config, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(device);
        var clock = new PhaseClock();
        progress?.Report($"P03 SKR: Krylov subspace recycling: STUB experiment (seq {config.SeqLen}, {config.Heads} heads × {config.HeadDim})");
        clock.Lap("stub");
        return new KrylovRecyclingResult(config, clock.Seconds, clock.Phases);
    }
}
