namespace AttentionLab.Papers.AttentionGuard;

/// <summary>
/// Labels derived by rules from the same window features the forest sees — how OULAD-style data (no attention labels)
/// gets its "ground truth" (spec §2). A forest trained on these recovers the rule, not attention: the leakage demo.
/// </summary>
/// <remarks>
/// In order: drifting = fragmented switching (back-navigation + tab switches ≥ <see cref="SwitchesPerMinute"/> per minute);
/// hyperfocused = sustained fast activity on one item (event rate ≥ <see cref="HyperfocusRate"/>/s and dwell ≥ the whole
/// window); fatigued = slow activity late in the session (rate ≤ <see cref="FatigueRate"/>/s after <see cref="FatigueAfter"/> s
/// on task); otherwise focused.
/// </remarks>
public static class RuleLabeler
{
    /// <summary>Back-navigations plus tab switches per minute that count as fragmented.</summary>
    public const double SwitchesPerMinute = 6;
    /// <summary>Events per second that count as sustained fast activity.</summary>
    public const double HyperfocusRate = 0.55;
    /// <summary>Events per second that count as slow.</summary>
    public const double FatigueRate = 0.25;
    /// <summary>Seconds on task after which slow activity counts as fatigue.</summary>
    public const double FatigueAfter = 120;

    /// <summary>The rule's state for one window's raw features (<see cref="WindowFeaturizer.Names"/> order).</summary>
    public static AttentionState Label(double[] features, double windowSeconds)
    {
        ArgumentNullException.ThrowIfNull(features);
        if (features.Length != WindowFeaturizer.Names.Count)
            throw new ArgumentException($"expected {WindowFeaturizer.Names.Count} raw features, got {features.Length}.", nameof(features));
        if (features.Any(double.IsNaN)) throw new ArgumentException("features hold NaN.", nameof(features));
        if (!(windowSeconds > 0)) throw new ArgumentException($"window must be longer than zero, got {windowSeconds}.", nameof(windowSeconds));
        double rate = features[0], switches = features[6] + features[7], dwell = features[8], onTask = features[WindowFeaturizer.TimeOnTask];
        if (switches >= SwitchesPerMinute) return AttentionState.Drifting;
        if (rate >= HyperfocusRate && dwell >= windowSeconds - 1e-9) return AttentionState.Hyperfocused;
        if (rate <= FatigueRate && onTask >= FatigueAfter) return AttentionState.Fatigued;
        return AttentionState.Focused;
    }
}
