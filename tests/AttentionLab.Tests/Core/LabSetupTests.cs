using AttentionLab.Core;
using TorchSharp;

namespace AttentionLab.Tests.Core;

public class LabSetupTests
{
    [Fact]
    public void SetupChoosesCpuHereSetsSeedAndPrintsTheStamp()
    {
        var output = new StringWriter();
        var previous = Console.Out;
        Console.SetOut(output);
        LabContext ctx;
        try { ctx = Lab.Setup(seed: 7); }
        finally { Console.SetOut(previous); }

        Assert.Equal(torch.cuda.is_available() ? DeviceType.CUDA : DeviceType.CPU, ctx.Device.type);
        Assert.Equal(7, ctx.Seed);
        Assert.True(ctx.Threads >= 1);
        string text = output.ToString();
        Assert.Contains("AttentionLab 0.1.0", text);
        Assert.Contains($"device {ctx.Device}", text);
        Assert.Contains("size smoke", text);

        // Same seed → same bits.
        torch.manual_seed(7);
        using var a = torch.randn(5);
        Lab.Setup(seed: 7);
        using var b = torch.randn(5);
        Assert.True(a.equal(b).all().item<bool>());
    }

    [Fact]
    public void BuildStampNamesTheLoadedDll()
    {
        var build = BuildInfo.Current;
        Assert.StartsWith("0.1.0", build.Version);
        Assert.True(build.BuiltAt > DateTimeOffset.UtcNow.AddYears(-5));
        Assert.Contains("built", build.Describe(DateTimeOffset.UtcNow));
    }

    [Theory]
    [InlineData("smoke", RunSize.Smoke)]
    [InlineData("FULL", RunSize.Full)]
    [InlineData(null, RunSize.Smoke)]
    public void SizeParses(string? text, RunSize expected) => Assert.Equal(expected, Lab.ParseSize(text));

    [Fact]
    public void BadSettingsNameTheVariable()
    {
        Assert.Equal(Lab.SizeVariable, Assert.Throws<ArgumentException>(() => Lab.ParseSize("huge")).ParamName);
        Assert.Equal(Lab.DeviceVariable, Assert.Throws<ArgumentException>(() => Lab.ChooseDevice("gpu")).ParamName);
        if (!torch.cuda.is_available())
        {
            var e = Assert.Throws<ArgumentException>(() => Lab.ChooseDevice("cuda"));
            Assert.Contains("CUDA is not available", e.Message);
        }
        Assert.Equal(DeviceType.CPU, Lab.ChooseDevice("CPU").type);
    }

    [Fact]
    public void ExternalLibTorchFolderIsCheckedAndLoaded()
    {
        Assert.Throws<DirectoryNotFoundException>(() => TorchRuntime.LoadExternalLibTorch("/no/such/folder"));
        var empty = Directory.CreateTempSubdirectory("nolibtorch-");
        try
        {
            var e = Assert.Throws<FileNotFoundException>(() => TorchRuntime.LoadExternalLibTorch(empty.FullName));
            Assert.Contains(TorchRuntime.LibDirVariable, e.Message);
        }
        finally { empty.Delete(); }
    }
}

public class LeakCheckTests
{
    [Fact]
    public void ALeakingActionIsCaughtAndACleanOneIsNot()
    {
        var kept = new List<TorchSharp.torch.Tensor>();
        var e = Assert.Throws<InvalidOperationException>(() => LeakCheck.AssertNoLeak(() => kept.Add(TorchSharp.torch.zeros(2)), "hoarder"));
        Assert.Contains("hoarder leaks: 2 more", e.Message);
        foreach (var t in kept) t.Dispose();
        LeakCheck.AssertNoLeak(() => { using var scope = TorchSharp.torch.NewDisposeScope(); TorchSharp.torch.ones(3).add(1); }, "scoped");
    }
}
