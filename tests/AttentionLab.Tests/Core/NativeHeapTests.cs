using AttentionLab.Core;

namespace AttentionLab.Tests.Core;

public class NativeHeapTests
{
    [Fact]
    public void TuneAppliesOnGlibcAndTheVariableOptsOut()
    {
        string? before = Environment.GetEnvironmentVariable(NativeHeap.Variable);
        try
        {
            Environment.SetEnvironmentVariable(NativeHeap.Variable, "default");
            Assert.False(NativeHeap.Tune());
            Assert.False(NativeHeap.Tuned);
            Environment.SetEnvironmentVariable(NativeHeap.Variable, null);
            Assert.Equal(OperatingSystem.IsLinux(), NativeHeap.Tune());                 // glibc accepts both thresholds
            Assert.Equal(OperatingSystem.IsLinux(), NativeHeap.Tuned);
        }
        finally
        {
            Environment.SetEnvironmentVariable(NativeHeap.Variable, before);
            NativeHeap.Tune();
        }
    }
}
