using AttentionLab.Core;
using TorchSharp;

namespace AttentionLab.Tests.Core;

/// <summary>ATTNLAB_THREADS, ATTNLAB_HEAP and ATTNLAB_SIZE: a bad value is an ArgumentException naming the variable.</summary>
public class EnvironmentVariableTests
{
    [Fact]
    public void ThreadsAboveTheCoreCountAreClampedWithAWarning()
    {
        var warnings = new List<string>();
        Assert.Equal(2, Lab.ParseThreads("999", processorCount: 2, warnings.Add));
        string warning = Assert.Single(warnings);
        Assert.Contains(Lab.ThreadsVariable + "=999", warning);
        Assert.Contains("2 core", warning);

        warnings.Clear();
        Assert.Equal(3, Lab.ParseThreads("3", processorCount: 4, warnings.Add));
        Assert.Equal(4, Lab.ParseThreads(" 4", processorCount: 4, warnings.Add));
        Assert.Null(Lab.ParseThreads(null, processorCount: 4, warnings.Add));
        Assert.Empty(warnings);
    }

    [Theory]
    [InlineData("many")]
    [InlineData("1.5")]
    [InlineData("0")]
    [InlineData("-2")]
    public void ThreadsThatAreNotAPositiveIntegerAreRefusedByName(string text)
    {
        var e = Assert.Throws<ArgumentException>(() => Lab.ParseThreads(text, processorCount: 2, _ => { }));
        Assert.Equal(Lab.ThreadsVariable, e.ParamName);
        Assert.Contains($"{Lab.ThreadsVariable}='{text}'", e.Message);
    }

    [Fact]
    public void SetupWarnsAndClampsWhenThreadsExceedTheCores()
    {
        string? before = Environment.GetEnvironmentVariable(Lab.ThreadsVariable);
        int threadsBefore = torch.get_num_threads();
        var output = new StringWriter();
        var previous = Console.Out;
        try
        {
            Environment.SetEnvironmentVariable(Lab.ThreadsVariable, (Environment.ProcessorCount + 997).ToString());
            Console.SetOut(output);
            var ctx = Lab.Setup(seed: 0);
            Assert.Equal(Environment.ProcessorCount, ctx.Threads);
        }
        finally
        {
            Console.SetOut(previous);
            Environment.SetEnvironmentVariable(Lab.ThreadsVariable, before);
            torch.set_num_threads(threadsBefore);
        }
        Assert.Contains($"WARNING: {Lab.ThreadsVariable}={Environment.ProcessorCount + 997} is more than", output.ToString());
    }

    [Theory]
    [InlineData(null, true)]
    [InlineData("", true)]
    [InlineData("tuned", true)]
    [InlineData(" Tuned ", true)]
    [InlineData("default", false)]
    [InlineData("DEFAULT", false)]
    public void HeapModesAreTunedOrDefault(string? text, bool tuned) => Assert.Equal(tuned, NativeHeap.WantsTuned(text));

    [Theory]
    [InlineData("bogus")]
    [InlineData("jemalloc")]
    [InlineData("off")]
    public void AnUnknownHeapModeIsRefusedWithTheAllowedValues(string text)
    {
        var e = Assert.Throws<ArgumentException>(() => NativeHeap.WantsTuned(text));
        Assert.Equal(NativeHeap.Variable, e.ParamName);
        Assert.Contains($"{NativeHeap.Variable}='{text}'", e.Message);
        Assert.Contains("tuned", e.Message);
        Assert.Contains("default", e.Message);
    }

    [Fact]
    public void TuneRefusesAnUnknownHeapModeFromTheEnvironment()
    {
        string? before = Environment.GetEnvironmentVariable(NativeHeap.Variable);
        try
        {
            Environment.SetEnvironmentVariable(NativeHeap.Variable, "bogus");
            Assert.Equal(NativeHeap.Variable, Assert.Throws<ArgumentException>(() => NativeHeap.Tune()).ParamName);
        }
        finally
        {
            Environment.SetEnvironmentVariable(NativeHeap.Variable, before);
            NativeHeap.Tune();
        }
    }

    [Fact]
    public void AnUnknownSizeIsRefusedByName()
    {
        var e = Assert.Throws<ArgumentException>(() => Lab.ParseSize("huge"));
        Assert.Equal(Lab.SizeVariable, e.ParamName);
        Assert.Contains($"{Lab.SizeVariable}='huge'", e.Message);
        Assert.Contains("smoke or full", e.Message);
    }
}
