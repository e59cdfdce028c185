using AttentionLab.Core;

namespace AttentionLab.Tests.Core;

public class PhaseClockTests
{
    [Fact]
    public void LapsPartitionTheElapsedTimeInOrder()
    {
        var clock = new PhaseClock();
        Thread.Sleep(20);
        clock.Lap("first");
        Thread.Sleep(5);
        clock.Lap("second");
        Assert.Equal(new[] { "first", "second" }, clock.Phases.Keys);
        Assert.True(clock.Phases["first"] >= 0.015, $"first {clock.Phases["first"]}");
        Assert.True(clock.Phases.Values.Sum() <= clock.Seconds + 1e-9);
        Assert.Throws<ArgumentException>(() => clock.Lap(" "));
    }
}
