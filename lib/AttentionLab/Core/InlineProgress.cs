namespace AttentionLab.Core;

/// <summary>
/// An <see cref="IProgress{T}"/> that calls its handler at once, on the reporting thread (System.Progress posts to a
/// synchronization context, so notebook lines can arrive late or out of order).
/// </summary>
public sealed class InlineProgress<T>(Action<T> handler) : IProgress<T>
{
    public void Report(T value) => handler(value);
}
