using AttentionLab.Bench;
using AttentionLab.Core;
using AttentionLab.Papers.Based;
using TorchSharp;
using Xunit.Abstractions;

namespace AttentionLab.Tests.Papers;

/// <summary>The notebook's smoke run, once: its claims at seed 0 and the shape of everything the notebook plots.</summary>
public class BasedExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public void SmokeRunHoldsItsClaimsAtSeed0()
    {
        var config = BasedExperiment.Config.Smoke;
        var result = BasedExperiment.Run(config, torch.CPU, new InlineProgress<string>(output.WriteLine));
        output.WriteLine(result.ToDataFrame().ToString());
        output.WriteLine(result.MqarFrame().ToString());
        output.WriteLine(result.PrototypeFrame().ToString());
        output.WriteLine(BasedBenchmark.ToDataFrame(result.Prefill).ToString());
        output.WriteLine(string.Join(", ", result.PhaseSeconds.Select(p => $"{p.Key} {p.Value:F1} s")));

        // the claims: every exactness check and asserted claim holds (their statuses are compared with
        // tests/expected-claims.csv by the notebook test)
        var claims = result.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        output.WriteLine(claims.Findings().ToString());
        Assert.Empty(claims.Failures);
        Assert.Equal("smoke", claims.Size);
        Assert.Equal((256, 64, 4, 64), (config.Mqar.Vocab, config.Mqar.SeqLen, config.Mqar.Pairs, config.Mqar.DModel));   // the spec's smoke size

        // probe: the spec's orderings at N = 64, and a window ≥ N is softmax exactly
        Assert.True(result.TaylorRecall(16, 64) > result.TaylorRecall(8, 64) + 0.1);
        Assert.True(result.ProbeRecall("softmax (KV cache)", 64) > result.TaylorRecall(16, 64));
        Assert.True(result.TaylorRecall(16, 64) > result.ProbeRecall("identity d′=16", 64));
        Assert.True(result.ProbeRecall("identity d′=16", 64) > result.ProbeRecall("elu+1 d′=16", 64));
        Assert.Equal(result.ProbeRecall("softmax (KV cache)", 32), result.ProbeRecall("swa w=32", 32));
        Assert.True(result.ProbeRecall("swa w=64", 128) < result.ProbeRecall("softmax (KV cache)", 128) - 0.2);
        Assert.Equal(BasedResult.SpecPrototype.Count, result.PrototypeRows().Count);

        // exactness phase: 5 forms × (float64, float32, h0 carry) and 3 gradients each
        Assert.Equal(15, result.Exactness.Forms.Count);
        Assert.Equal(15, result.Exactness.Gradients.Count);

        // MQAR: every model streamed; equal-state pairs as configured (BASED d′ = 4 and elu+1 d′ = 15 hold the same state)
        Assert.Equal(config.MqarModels.Length, result.Mqar.Count);
        Assert.All(result.Mqar, r => Assert.Equal(config.Mqar.Steps, r.Losses.Count));
        Assert.All(result.Mqar, r => Assert.True(r.StepVsForwardMaxAbs < 1e-4, $"{r.Model.Name}: {r.StepVsForwardMaxAbs}"));
        long Bytes(string name) => result.Mqar.Single(r => r.Model.Name == name).StateBytes;
        Assert.Equal(Bytes("based d′=4"), Bytes("linear elu+1 d′=15"));

        // decode: constant BASED state, linear KV cache; prefill: every method at every length
        var kv = result.Decode.Where(p => p.Method.StartsWith("softmax")).ToList();
        Assert.Equal(kv[0].StateBytes * kv[^1].T / kv[0].T, kv[^1].StateBytes);
        Assert.Equal(4 * config.PrefillLengths.Length, result.Prefill.Count);
        Assert.Equal(new[] { "source", "family", "name", "d_feature", "window_keys", "d_model", "state_bytes", "recall" },
            result.ToDataFrame().Columns.Select(c => c.Name));
    }

    /// <summary>A result built by hand: every claim holds; then each measurement crosses its criterion and the claim flips.</summary>
    [Fact]
    public void EachClaimFollowsItsMeasurement()
    {
        var good = Good();
        var claims = good.Claims();
        output.WriteLine(claims.ToDataFrame().ToString());
        Assert.Empty(claims.Failures);
        Assert.All(claims, c => Assert.Equal(ClaimStatus.Holds, c.Status));

        void Fails(BasedResult r, string id)
        {
            var c = r.Claims();
            Assert.Equal(ClaimStatus.DoesNotHold, c[id].Status);
            Assert.Contains(c.Failures, f => f.Id == id);
            Assert.Contains(id, Assert.Throws<ClaimCheckException>(() => c.Check()).Message);
        }
        var e = good.Exactness;
        BasedFormError Worse(BasedFormError f, double v) => f with { Error = new ErrorStats(v, v, 10) };
        Fails(good with { Exactness = e with { KernelMaxAbs = 1e-5 } }, "taylor-kernel");
        Fails(good with { Exactness = e with { Forms = e.Forms.Select(f => f.What == "h0 carry" ? Worse(f, 1e-8) : f).ToList() } },
            "forms-equal-naive-float64");
        Fails(good with { Exactness = e with { Forms = e.Forms.Select(f => f.DType == "float32" ? Worse(f, double.NaN) : f).ToList() } },
            "forms-equal-naive-float32");
        Fails(good with { Exactness = e with { Gradients = e.Gradients.Select(f => f.What == "dk" ? Worse(f, 1e-6) : f).ToList() } }, "gradients-agree");
        Fails(good with { Exactness = e with { MinKernel = 0.4 } }, "denominator-positive");
        Fails(good with { Exactness = e with { CausalMaxAbs = 1e-3 } }, "causal");
        Fails(good with { Probe = good.Probe.Select(p => p.Name == "swa w=64" && p.Pairs == 32 ? p with { Recall = 0.5 } : p).ToList() },
            "swa-equals-softmax-in-window");
        Fails(good with { Exactness = e with { BasedWindowMaxAbs = 0.1 } }, "swa-based-window-convention");
        Fails(good with { Mqar = good.Mqar.Select(r => r.Model.Knob == 15 ? r with { StepVsForwardMaxAbs = 1e-3 } : r).ToList() }, "step-equals-forward");
        Fails(good with { Decode = good.Decode.Select(p => p.Method.StartsWith("based") ? p with { StateBytes = p.T } : p).ToList() }, "decode-constant-state");
        Fails(good with { Probe = good.Probe.Select(p => p.Name == "taylor d′=16" && p.Pairs == 64 ? p with { Recall = 0.2 } : p).ToList() },
            "probe-recall-rises-with-dprime");
        Fails(good with { Probe = good.Probe.Select(p => p.Name == "identity d′=16" && p.Pairs == 64 ? p with { Recall = 0.7 } : p).ToList() },
            "probe-softmax-taylor-identity");
        Fails(good with { Mqar = good.Mqar.Select(r => r.Model.Family == BasedLayerKind.Attention ? r with { Accuracy = 0.5 } : r).ToList() },
            "mqar-attention-learns");
        Fails(good with { Mqar = good.Mqar.Select(r => r.Model.Name == "based d′=4" ? r with { Accuracy = 0.2 } : r).ToList() }, "mqar-based-beats-swa");
        Fails(good with { Mqar = good.Mqar.Select(r => r.Model.Name == "linear elu+1 d′=15" ? r with { Accuracy = 0.95 } : r).ToList() },
            "mqar-based-beats-pure-linear");

        // a lead under the margin: the status follows the measurement, but it is not asserted
        var close = (good with { Mqar = good.Mqar.Select(r => r.Model.Name == "linear elu+1 d′=15" ? r with { Accuracy = 0.82 }
            : r).ToList() }).Claims()["mqar-based-beats-pure-linear"];
        Assert.Equal(ClaimStatus.Holds, close.Status);
        Assert.False(close.Asserted);
        // no state-matched window: not shown, with the reason
        var unmatched = good with { Mqar = good.Mqar.Select(
            r => r.Model.Family == BasedLayerKind.SlidingWindow ? r with { StateBytes = 40_000 } : r).ToList() };
        Assert.Equal(ClaimStatus.NotShown, unmatched.Claims()["mqar-based-beats-swa"].Status);

        // reported: the probe against the prototype and the timings flip their status but never fail the check
        var off = good with { Probe = good.Probe.Select(p => p.Name == "elu+1 d′=16" && p.Pairs == 64 ? p with { Recall = 0.2 } : p).ToList() };
        Assert.Equal(ClaimStatus.DoesNotHold, off.Claims()["probe-matches-prototype"].Status);
        Assert.Empty(off.Claims().Failures);
        var slow = good with { Decode = good.Decode.Select(p => p.Method.StartsWith("based") ? p with { MsPerToken = p.T / 64.0 } : p).ToList() };
        Assert.Equal(ClaimStatus.DoesNotHold, slow.Claims()["decode-constant-cost"].Status);
        Assert.Empty(slow.Claims().Failures);
        var quadratic = good with { Prefill = good.Prefill.Select(
            p => p.Method == BasedBenchmark.BasedChunked ? p with { MedianMs = p.SeqLen * p.SeqLen / 1e4 } : p).ToList() };
        Assert.Equal(ClaimStatus.DoesNotHold, quadratic.Claims()["prefill-linear-time"].Status);
        Assert.Empty(quadratic.Claims().Failures);
    }

    static BasedResult Good()
    {
        var config = BasedExperiment.Config.Smoke;
        var forms = new[] { "parallel", "recurrent", "fla" }.SelectMany(f => new[]
        {
            new BasedFormError(f, "float64", "output", new ErrorStats(1e-15, 1e-15, 10)),
            new BasedFormError(f, "float32", "output", new ErrorStats(1e-7, 1e-7, 10)),
            new BasedFormError(f, "float64", "h0 carry", new ErrorStats(1e-15, 1e-15, 10)),
        }).ToList();
        var grads = new[] { "parallel", "recurrent", "fla" }.SelectMany(
            f => new[] { "dq", "dk", "dv" }.Select(g => new BasedFormError(f, "float64", g, new ErrorStats(1e-14, 1e-14, 10)))).ToList();
        var exact = new BasedExactness(1e-15, 1e-15, forms, grads, 0.5, 0, 1e-16);
        // the probe at the spec's prototype numbers (so it "matches"); every N for the windows
        var probe = new List<ProbePoint>();
        foreach (int n in config.ProbePairs)
        {
            double soft = n == 64 ? 0.86 : n == 32 ? 0.95 : 0.8;
            foreach (int d in config.ProbeFeatureDims)
                probe.Add(new ProbePoint("based (taylor)", $"taylor d′={d}", d, null, n, 100,
                    BasedResult.SpecPrototype.TryGetValue(($"taylor d′={d}", n), out var r) ? r : 0.1 + d / 100.0));
            probe.Add(new ProbePoint("attention", "softmax (KV cache)", 16, null, n, 100, soft));
            probe.Add(new ProbePoint("linear (identity)", "identity d′=16", 16, null, n, 100, n == 64 ? 0.27 : 0.2));
            probe.Add(new ProbePoint("linear (elu+1)", "elu+1 d′=16", 16, null, n, 100, 0.02));
            foreach (int w in config.ProbeWindowKeys)
                probe.Add(new ProbePoint("sliding window", $"swa w={w}", 16, w, n, 100, w >= n ? soft : n == 128 && w == 64 ? 0.43 : 0.3 * w / n));
        }
        var mqar = new[]
        {
            new MqarRun(new MqarModel(BasedLayerKind.Attention), 0.95, Array.Empty<double>(), 33_280, 1, 1e-6, 0),
            new MqarRun(new MqarModel(BasedLayerKind.LinearAttention, 4), 0.85, Array.Empty<double>(), 4_412, 1, 1e-6, 0),
            new MqarRun(new MqarModel(BasedLayerKind.LinearAttention, 16), 0.9, Array.Empty<double>(), 40_292, 1, 1e-6, 0),
            new MqarRun(new MqarModel(BasedLayerKind.PlainLinearAttention, 15), 0.7, Array.Empty<double>(), 4_412, 1, 1e-6, 0),
            new MqarRun(new MqarModel(BasedLayerKind.SlidingWindow, 8), 0.1, Array.Empty<double>(), 4_608, 1, 1e-6, 0),
        };
        var decode = Enumerable.Range(1, 8).SelectMany(i => new[]
        {
            new DecodePoint("based (recurrent state)", 64 * i, 0.05, 10_000), new DecodePoint("softmax (KV cache)", 64 * i, 0.01 * i, 8_192L * 64 * i),
        }).ToList();
        var prefill = config.PrefillLengths.SelectMany(t => new[]
        {
            new SweepPoint(BasedBenchmark.BasedChunked, t, t / 100.0, null), new SweepPoint(BasedBenchmark.Reference, t, t * (double)t / 1e4, null),
            new SweepPoint(BasedBenchmark.Sdpa, t, t * (double)t / 2e4, null),
        }).ToList();
        return new BasedResult(config, exact, probe, mqar, decode, prefill, 0, new Dictionary<string, double>());
    }
}
