using AttentionLab.Bench;

namespace AttentionLab.Tests.Core;

public class BenchmarkSweepTests
{
    [Fact]
    public void SweepTimesEveryPointBeforeMeasuringMemory()
    {
        var calls = new List<string>();
        void ForEach(int t, Action<string, Action> body)
        {
            body("a", () => calls.Add($"a{t}"));
            body("b", () => calls.Add($"b{t}"));
        }
        var rows = Benchmark.Sweep(new[] { 2, 5 }, ForEach, (name, t, time, mib) => (name, t, time.Repeats), warmup: 0, repeats: 2, measureMemory: true);
        Assert.Equal(new[] { ("a", 2, 2), ("b", 2, 2), ("a", 5, 2), ("b", 5, 2) }, rows);
        Assert.Equal(new[] { "a2", "a2", "b2", "b2", "a5", "a5", "b5", "b5" }, calls.Take(8));   // two timed repeats each first
        Assert.Equal(new[] { "a2", "b2", "a5", "b5" }, calls.Skip(8));                  // then the memory pass: no timing after a probe
        Assert.Equal("lengths", Assert.Throws<ArgumentException>(() => Benchmark.Sweep(new[] { 0 }, ForEach, (n, t, s, m) => n)).ParamName);
    }
}
