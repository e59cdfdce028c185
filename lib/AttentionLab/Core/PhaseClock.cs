using System.Diagnostics;

namespace AttentionLab.Core;

/// <summary>Wall-clock time of an experiment and of each of its phases: call <see cref="Lap"/> at the end of every phase.</summary>
public sealed class PhaseClock
{
    readonly Stopwatch clock = Stopwatch.StartNew();
    readonly Dictionary<string, double> phases = new();
    double mark;

    /// <summary>Records the seconds since the previous lap (or the start) under <paramref name="phase"/>.</summary>
    public void Lap(string phase)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(phase);
        double now = clock.Elapsed.TotalSeconds;
        phases[phase] = now - mark;
        mark = now;
    }

    /// <summary>Seconds since the clock started.</summary>
    public double Seconds => clock.Elapsed.TotalSeconds;

    /// <summary>Seconds per phase, in the order they ended.</summary>
    public IReadOnlyDictionary<string, double> Phases => phases;
}
