using System.Runtime.CompilerServices;
using TorchSharp;

namespace AttentionLab.Tests;

/// <summary>One torch thread for the whole test run (two measured 2–10× slower on the 2-core machines), and the library's
/// heap settings (<see cref="AttentionLab.Core.NativeHeap"/>), as notebooks and benchmarks use them.</summary>
static class TestSetup
{
#pragma warning disable CA2255
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Initialize()
    {
        torch.set_num_threads(1);
        AttentionLab.Core.NativeHeap.Tune();
    }
}
