namespace AttentionLab.Papers.TwinHpo;

/// <summary>The naive twin of <see cref="TopicMetrics.NpmiPerTopic"/>.</summary>
public static class TopicMetricsNaive
{
    /// <summary>The naive twin: every window enumerated as a set, every pair counted by membership (O(windows · pairs)).</summary>
    public static double[] NpmiPerTopic(int[][] topTopicWords, Corpus corpus, int window = 10)
    {
        var (tracked, counts) = TopicMetrics.Count(topTopicWords, corpus, window, naive: true);
        return TopicMetrics.Score(topTopicWords, tracked, counts);
    }
}
