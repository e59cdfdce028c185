namespace AttentionLab.Papers.AttentionGuard;

/// <summary>The interface pattern the paper's adaptive UI shows for a state ("bi-directional scaffolding").</summary>
public enum UiPattern
{
    /// <summary>Focused: leave the learner alone.</summary>
    Standard = 0,
    /// <summary>Drifting (under-stimulated): more stimulation — a prompt, an interactive element.</summary>
    MoreStimulation = 1,
    /// <summary>Hyperfocused: keep the flow, offer a gentle break reminder.</summary>
    BreakReminder = 2,
    /// <summary>Fatigued (over-stimulated): less stimulation — simplify, shorten.</summary>
    LessStimulation = 3,
}

/// <summary>
/// State → UI pattern with hysteresis (spec §2): the pattern changes only after the new state has been predicted for
/// <see cref="MinimumDwell"/> consecutive windows, so a single misclassified window does not make the interface flicker.
/// </summary>
public sealed class AdaptationPolicy
{
    /// <summary>A policy that needs <paramref name="minimumDwell"/> ≥ 1 consecutive windows (1 = no hysteresis).</summary>
    public AdaptationPolicy(int minimumDwell)
    {
        if (minimumDwell < 1) throw new ArgumentException($"minimum dwell must be at least 1 window, got {minimumDwell}.", nameof(minimumDwell));
        MinimumDwell = minimumDwell;
    }

    /// <summary>Consecutive windows a new state must last before the pattern follows it.</summary>
    public int MinimumDwell { get; }

    /// <summary>The pattern for a state.</summary>
    public static UiPattern PatternOf(AttentionState state) => state switch
    {
        AttentionState.Focused => UiPattern.Standard,
        AttentionState.Drifting => UiPattern.MoreStimulation,
        AttentionState.Hyperfocused => UiPattern.BreakReminder,
        AttentionState.Fatigued => UiPattern.LessStimulation,
        _ => throw new ArgumentException($"unknown state {(int)state}.", nameof(state)),
    };

    /// <summary>The pattern shown at each window of a session of predicted states (the first window's state sets the start).</summary>
    public UiPattern[] Apply(IReadOnlyList<AttentionState> predicted)
    {
        ArgumentNullException.ThrowIfNull(predicted);
        if (predicted.Count == 0) throw new ArgumentException("no predicted states.", nameof(predicted));
        var shown = new UiPattern[predicted.Count];
        var current = PatternOf(predicted[0]);
        int run = 0;
        for (int t = 0; t < predicted.Count; t++)
        {
            var wanted = PatternOf(predicted[t]);
            run = t > 0 && predicted[t] == predicted[t - 1] ? run + 1 : 1;          // windows the latest state has lasted
            if (wanted != current && run >= MinimumDwell) current = wanted;
            shown[t] = current;
        }
        return shown;
    }

    /// <summary>Pattern changes within a session.</summary>
    public static int Switches(IReadOnlyList<UiPattern> shown)
    {
        ArgumentNullException.ThrowIfNull(shown);
        return Enumerable.Range(1, Math.Max(0, shown.Count - 1)).Count(t => shown[t] != shown[t - 1]);
    }
}
