using AttentionLab.Core;
using AttentionLab.Papers.Based;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>The notebook's smoke run, once: the claim at seed 0 and the shape of everything the notebook plots.</summary>
public class BasedExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void SmokeRunHoldsTheClaimAtSeed0()
    {
        var config = BasedExperiment.Config.Smoke;
        var result = BasedExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine(result.MqarFrame().ToString());
        output.WriteLine(BasedBenchmark.ToDataFrame(result.Prefill).ToString());
        output.WriteLine(string.Join(", ", result.PhaseSeconds.Select(p => $"{p.Key} {p.Value:F1} s")));
        output.WriteLine(result.CheckClaim());

        // probe: the spec's orderings at N = 64, and a window ≥ N is softmax exactly
        Assert.True(result.TaylorRecall(16, 64) > result.TaylorRecall(8, 64) + 0.1);
        Assert.True(result.ProbeRecall("softmax (KV cache)", 64) > result.TaylorRecall(16, 64));
        Assert.True(result.TaylorRecall(16, 64) > result.ProbeRecall("identity d′=16", 64));
        Assert.True(result.ProbeRecall("identity d′=16", 64) > result.ProbeRecall("elu+1 d′=16", 64));
        Assert.Equal(result.ProbeRecall("softmax (KV cache)", 32), result.ProbeRecall("swa w=32", 32));
        Assert.True(result.ProbeRecall("swa w=64", 128) < result.ProbeRecall("softmax (KV cache)", 128) - 0.2);

        // MQAR: every model streamed; attention's state is the largest at this length only because T is tiny
        Assert.Equal(config.MqarModels.Length, result.Mqar.Count);
        Assert.All(result.Mqar, r => Assert.Equal(config.Mqar.Steps, r.Losses.Count));
        Assert.All(result.Mqar, r => Assert.True(r.StepVsForwardMaxAbs < 1e-4, $"{r.Model.Name}: {r.StepVsForwardMaxAbs}"));

        // decode: constant BASED state, linear KV cache; prefill: every method at every length
        var kv = result.Decode.Where(p => p.Method.StartsWith("softmax")).ToList();
        Assert.Equal(kv[0].StateBytes * kv[^1].T / kv[0].T, kv[^1].StateBytes);
        Assert.Equal(4 * config.PrefillLengths.Length, result.Prefill.Count);
        Assert.Equal(new[] { "source", "family", "name", "d_feature", "window", "d_model", "state_bytes", "recall" }, result.ToDataFrame().Columns.Select(c => c.Name));
    }

    [Fact]
    public void ClaimCheckThrowsAReadableMessage()
    {
        var config = BasedExperiment.Config.Smoke with { ProbeFeatureDims = new[] { 8, 16 }, ProbeWindows = new[] { 64 } };
        ProbePoint P(string name, double recall, int n = 64, int fd = 16, int? w = null) => new("f", name, fd, w, n, 100, recall);
        var probe = new[] { P("taylor d′=8", 0.2, fd: 8), P("taylor d′=16", 0.5), P("softmax (KV cache)", 0.8), P("identity d′=16", 0.3), P("swa w=64", 0.8, w: 64) };
        var mqar = new[]
        {
            new MqarRun(new MqarModel(BasedLayerKind.Attention), 0.95, Array.Empty<double>(), 9000, 1, 0, 0),
            new MqarRun(new MqarModel(BasedLayerKind.LinearAttention, 4), 0.9, Array.Empty<double>(), 2200, 1, 0, 0),
            new MqarRun(new MqarModel(BasedLayerKind.SlidingWindow, 8), 0.3, Array.Empty<double>(), 2300, 1, 0, 0),
        };
        var decode = new[] { new DecodePoint("based", 1, 0, 10), new DecodePoint("based", 2, 0, 10), new DecodePoint("softmax", 1, 0, 5), new DecodePoint("softmax", 2, 0, 10) };
        var good = new BasedResult(config, probe, mqar, decode, Array.Empty<PrefillPoint>(), 0, new Dictionary<string, double>());
        Assert.StartsWith("Claim holds", good.CheckClaim());
        var worse = good with { Probe = probe.Select(p => p.Name == "taylor d′=16" ? p with { Recall = 0.1 } : p).ToArray() };
        Assert.Contains("does not rise with d′", Assert.Throws<InvalidOperationException>(() => worse.CheckClaim()).Message);
        var lost = good with { Mqar = mqar.Select(r => r.Model.Knob == 4 ? r with { Accuracy = 0.4 } : r).ToArray() };
        Assert.Contains("does not beat swa w=8", Assert.Throws<InvalidOperationException>(() => lost.CheckClaim()).Message);
    }
}
