using AttentionLab.Core;
using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.KrylovRecycling;

/// <summary>Everything <see cref="KrylovRecyclingExperiment.Run"/> measured, its table and its claims. STUB written by new-paper.sh.</summary>
/// <param name="Config">The sizes it ran with.</param>
/// <param name="Seconds">Wall-clock time of the run.</param>
/// <param name="PhaseSeconds">Wall-clock time per phase.</param>
public sealed record KrylovRecyclingResult(KrylovRecyclingExperiment.Config Config, double Seconds, IReadOnlyDictionary<string, double> PhaseSeconds) : IPaperResult
{
    /// <summary>Columns: phase, seconds.</summary>
    public DataFrame ToDataFrame() => new(
        new StringDataFrameColumn("phase", PhaseSeconds.Keys),
        new DoubleDataFrameColumn("seconds", PhaseSeconds.Values));

    /// <summary>
    /// The paper's claims as this run measured them: exactness (the fast form vs <see cref="KrylovRecyclingNaive"/>), the paper's
    /// claim at this size (the spec's §6/§7 criterion), timings as reported. STUB: one "not shown" record until then.
    /// </summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(KrylovRecyclingExperiment.Paper.Number, Config.Size);
        claims.NotShown("headline", "STUB: the paper's headline claim (spec §7)", "the paper's figure, with units and source", "—",
            "the spec's criterion (§6/§7)", "not implemented yet: written by environment/tools/new-paper.sh");
        claims.Saw($"The stub ran in {Seconds:F2} s; nothing of the paper is implemented yet.");
        return claims;
    }
}
