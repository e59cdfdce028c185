using AttentionLab.Runner;

namespace Notebooks.Tests;

/// <summary>Issue 17 §5: the summary keeps the library's message and leaves a wrapped native text (and native frames) out.</summary>
public class ErrorTextNativeTests
{
    [Fact]
    public void Inner_native_exceptions_and_frames_stay_out_of_the_summary()
    {
        string wrapped = "System.ArgumentException: mask [3, 7] does not broadcast to the scores [B, Hq, Tq, Tk] = [2, 2, 5, 5]. (Parameter 'mask')\n" +
                         " ---> System.Runtime.InteropServices.ExternalException (0x80004005): The size of tensor a (5) must match the size of tensor b (7)\n" +
                         "Exception raised from infer_size_impl at /pytorch/aten/src/ATen/ExpandUtils.cpp:31 (most recent call first):\n" +
                         "frame #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x96 (0x7f00 in /x/libc10.so)\n" +
                         "   at TorchSharp.torch.CheckForErrors()\n   --- End of inner exception stack trace ---\n   at Submission#4.Run()";
        string first = ErrorText.FirstLines(wrapped);
        Assert.Equal("System.ArgumentException: mask [3, 7] does not broadcast to the scores [B, Hq, Tq, Tk] = [2, 2, 5, 5]. (Parameter 'mask')", first);
        string bare = "System.Runtime.InteropServices.ExternalException (0x80004005): The size of tensor a (5) must match the size of tensor b (7)\n" +
                      "Exception raised from infer_size_impl at /pytorch/aten/src/ATen/ExpandUtils.cpp:31 (most recent call first):\n" +
                      "frame #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x96 (0x7f00 in /x/libc10.so)\n" +
                      "frame #1: at::infer_size_impl + 0x1 (0x7f01 in /x/libtorch_cpu.so)";
        string line = ErrorText.FirstLines(bare);
        Assert.DoesNotContain("frame #", line);
        Assert.DoesNotContain(".so", line);
        Assert.StartsWith("System.Runtime.InteropServices.ExternalException", line);
    }
}
