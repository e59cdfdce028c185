using TorchSharp;

namespace AttentionLab.Core;

/// <summary>Leak tests around TorchSharp's live-tensor count (<see cref="DisposeScopeManager.Statistics"/>).</summary>
public static class LeakCheck
{
    /// <summary>Tensors alive on this thread now.</summary>
    public static long LiveTensors => DisposeScopeManager.Statistics.ThreadTotalLiveCount;

    /// <summary>
    /// Runs <paramref name="action"/> once to warm up (lazily created buffers, optimiser state, gradients), then
    /// <paramref name="rounds"/> more times, and throws when the live-tensor count grew: something the action made
    /// was neither disposed nor owned by a holder that it disposed.
    /// </summary>
    public static void AssertNoLeak(Action action, string what, int rounds = 2)
    {
        ArgumentNullException.ThrowIfNull(action);
        Guard.Positive(rounds, nameof(rounds));
        action();
        long before = LiveTensors;
        for (int i = 0; i < rounds; i++) action();
        long after = LiveTensors;
        if (after != before)
            throw new InvalidOperationException($"{what} leaks: {after - before} more live tensor(s) after {rounds} more round(s) ({before} → {after}).");
    }
}
