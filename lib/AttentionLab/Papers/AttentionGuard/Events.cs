namespace AttentionLab.Papers.AttentionGuard;

/// <summary>The paper's four attention states (the latent states of the simulator's HMM).</summary>
public enum AttentionState
{
    Focused = 0,
    Drifting = 1,
    Hyperfocused = 2,
    Fatigued = 3,
}

/// <summary>Kinds of privacy-preserving interaction events (no content, only what happened and when).</summary>
public enum EventKind
{
    Click = 0,
    Scroll = 1,
    Key = 2,
    BackNavigation = 3,
    TabSwitch = 4,
    Answer = 5,
}

/// <summary>
/// One interaction event at <paramref name="Time"/> seconds since the session began. <paramref name="Value"/> carries the
/// event's mark: scroll velocity (px/s) for a scroll, answer latency (s) for an answer, 0 otherwise;
/// <paramref name="Error"/> is true for a wrong answer.
/// </summary>
public readonly record struct InteractionEvent(double Time, EventKind Kind, double Value = 0, bool Error = false);

/// <summary>
/// One learner's session: events sorted by time over [0, <paramref name="Duration"/>) seconds, and (for simulated
/// sessions) the true state of each 30-s step.
/// </summary>
public sealed record EventStream(int Learner, int Day, double Duration, IReadOnlyList<InteractionEvent> Events, IReadOnlyList<AttentionState> States)
{
    /// <summary>Checks times lie in [0, Duration), ascending, finite; marks finite and non-negative.</summary>
    public static void Validate(EventStream stream, string name)
    {
        ArgumentNullException.ThrowIfNull(stream, name);
        if (!(stream.Duration > 0) || double.IsInfinity(stream.Duration))
            throw new ArgumentException($"{name}: duration must be positive and finite, got {stream.Duration}.", name);
        double previous = double.NegativeInfinity;
        for (int i = 0; i < stream.Events.Count; i++)
        {
            var e = stream.Events[i];
            if (double.IsNaN(e.Time) || e.Time < 0 || e.Time >= stream.Duration)
                throw new ArgumentException($"{name}: event {i} at t = {e.Time} lies outside [0, {stream.Duration}).", name);
            if (e.Time < previous) throw new ArgumentException($"{name}: event {i} at t = {e.Time} comes before t = {previous}; sort by time.", name);
            if (!double.IsFinite(e.Value) || e.Value < 0)
                throw new ArgumentException($"{name}: event {i} has mark {e.Value}; marks are finite and non-negative.", name);
            if (!Enum.IsDefined(e.Kind)) throw new ArgumentException($"{name}: event {i} has unknown kind {(int)e.Kind}.", name);
            previous = e.Time;
        }
    }
}
