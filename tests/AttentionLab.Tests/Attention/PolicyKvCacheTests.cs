using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Attention;

public class PolicyKvCacheTests
{
    /// <summary>q [B, T, Hq, D], k [B, T, Hkv, D], v [B, T, Hkv, Dv].</summary>
    static (Tensor Q, Tensor K, Tensor V) Inputs(long b, long t, long hq, long hkv, long d, long dv, ScalarType dtype, int seed)
    {
        torch.manual_seed(seed);
        return (torch.randn(b, t, hq, d, dtype: dtype), torch.randn(b, t, hkv, d, dtype: dtype), torch.randn(b, t, hkv, dv, dtype: dtype));
    }

    /// <summary>Decodes token by token; returns the outputs [B, T, Hq, Dv] and, per step, the kept token positions [B, Hkv, n].</summary>
    static (Tensor Outputs, List<long[,,]> Kept) Decode(PolicyKvCache cache, Tensor q, Tensor k, Tensor v)
    {
        var outs = new List<Tensor>(); var kept = new List<long[,,]>();
        for (long t = 0; t < q.shape[1]; t++)
        {
            var r = cache.Attend(q.narrow(1, t, 1), k.narrow(1, t, 1), v.narrow(1, t, 1));
            outs.Add(r.Output);
            var pos = cache.TokenPositions;
            var arr = new long[pos.shape[0], pos.shape[1], pos.shape[2]];
            var flat = pos.contiguous().data<long>().ToArray();
            for (int i = 0; i < flat.Length; i++) arr[i / (pos.shape[1] * pos.shape[2]), i / pos.shape[2] % pos.shape[1], i % pos.shape[2]] = flat[i];
            kept.Add(arr);
        }
        return (torch.cat(outs, 1), kept);
    }

    [Theory]
    [InlineData(1, 1, 1, 1)]
    [InlineData(2, 13, 4, 2)]
    [InlineData(1, 20, 3, 3)]
    public void FullPolicyEqualsCausalReferenceAttentionAtEveryStep(int b, int t, int hq, int hkv)
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Inputs(b, t, hq, hkv, 8, 5, float32, 51);
        using var cache = new PolicyKvCache(KvPolicy.Full);
        var (outputs, kept) = Decode(cache, q, k, v);
        using var full = ReferenceAttention.Softmax(q, k, v, causal: true);
        AssertClose.Tensors(outputs, full.Output, atol: 1e-6, rtol: 0, what: "full-policy decode");
        for (int s = 0; s < t; s++) Assert.Equal(s + 1, kept[s].GetLength(2));
    }

    [Theory]
    [InlineData(4, 5, 2)]
    [InlineData(3, 4, 1)]
    [InlineData(0, 6, 2)]
    [InlineData(1, 1, 1)]
    public void SinkWindowEqualsTheSinkWindowMaskAndKeepsSinksAndTheLastWindow(int nSink, int window, int hkv)
    {
        using var scope = NewDisposeScope();
        const int T = 21;
        var (q, k, v) = Inputs(2, T, 2, hkv, 8, 5, float32, 52);
        using var cache = new PolicyKvCache(KvPolicy.SinkWindow(window, nSink));
        var (outputs, kept) = Decode(cache, q, k, v);
        using var masked = ReferenceAttention.Softmax(q, k, v, mask: AttentionMasks.SinkWindow(T, T, nSink, window));
        AssertClose.Tensors(outputs, masked.Output, atol: 1e-6, rtol: 0, what: $"sink {nSink} + window {window}");
        for (int step = 0; step < T; step++)
        {
            int t = step + 1;                                                         // tokens seen
            var expected = Enumerable.Range(0, t).Where(j => j < nSink || j >= t - window).ToArray();   // [0, n_s) ∪ [t − w, t)
            for (int bi = 0; bi < 2; bi++)
            for (int h = 0; h < hkv; h++)
                Assert.Equal(expected, Enumerable.Range(0, kept[step].GetLength(2)).Select(i => (int)kept[step][bi, h, i]).ToArray());
        }
        Assert.Equal(Enumerable.Range(0, nSink + window).Select(i => (long)i).ToArray(), cache.CachePositions.data<long>().ToArray());
    }

    [Fact]
    public void SinkWindowShorterThanItsBudgetIsFullAttentionBitwise()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Inputs(2, 8, 4, 2, 8, 5, float32, 53);
        using var sw = new PolicyKvCache(KvPolicy.SinkWindow(window: 5, nSink: 4));
        using var full = new PolicyKvCache(KvPolicy.Full);
        Assert.True(TensorAssert.Same(Decode(sw, q, k, v).Outputs, Decode(full, q, k, v).Outputs));
    }

    /// <summary>
    /// H2O as plain float64 loops: per (b, kv head) a list of (position, F); each step appends t, evicts the first
    /// argmin F outside the `recent` newest while over heavy + recent, attends every query head of the group to the
    /// kept keys, and adds each head's probabilities to F.
    /// </summary>
    static (double[,,,] Out, List<long[,,]> Kept) NaiveH2O(Tensor q, Tensor k, Tensor v, int heavy, int recent)
    {
        long b = q.shape[0], T = q.shape[1], hq = q.shape[2], d = q.shape[3], hkv = k.shape[2], dv = v.shape[3], g = hq / hkv;
        var qa = q.data<double>().ToArray(); var ka = k.data<double>().ToArray(); var va = v.data<double>().ToArray();
        var pos = new List<long>[b, hkv]; var f = new List<double>[b, hkv];
        for (int bi = 0; bi < b; bi++) for (int h = 0; h < hkv; h++) { pos[bi, h] = new(); f[bi, h] = new(); }
        var o = new double[b, T, hq, dv]; var kept = new List<long[,,]>();
        for (long t = 0; t < T; t++)
        {
            for (int bi = 0; bi < b; bi++)
            for (int h = 0; h < hkv; h++)
            {
                pos[bi, h].Add(t); f[bi, h].Add(0);
                while (pos[bi, h].Count > heavy + recent)
                {
                    int older = pos[bi, h].Count - recent, e = 0;
                    for (int i = 1; i < older; i++) if (f[bi, h][i] < f[bi, h][e]) e = i;
                    pos[bi, h].RemoveAt(e); f[bi, h].RemoveAt(e);
                }
            }
            var snapshot = new long[b, hkv, pos[0, 0].Count];
            for (int bi = 0; bi < b; bi++) for (int h = 0; h < hkv; h++) for (int i = 0; i < pos[bi, h].Count; i++) snapshot[bi, h, i] = pos[bi, h][i];
            kept.Add(snapshot);
            for (int bi = 0; bi < b; bi++)
            for (int hh = 0; hh < hq; hh++)
            {
                int h = (int)(hh / g);
                var keys = pos[bi, h];
                var s = keys.Select(j =>
                {
                    double dot = 0;
                    for (long x = 0; x < d; x++) dot += qa[((bi * T + t) * hq + hh) * d + x] * ka[((bi * T + j) * hkv + h) * d + x];
                    return dot / Math.Sqrt(d);
                }).ToArray();
                double m = s.Max(), z = s.Sum(x => Math.Exp(x - m));
                for (int i = 0; i < keys.Count; i++)
                {
                    double p = Math.Exp(s[i] - m) / z;
                    for (long x = 0; x < dv; x++) o[bi, t, hh, x] += p * va[((bi * T + keys[i]) * hkv + h) * dv + x];
                    f[bi, h][i] += p;
                }
            }
        }
        return (o, kept);
    }

    [Theory]
    [InlineData(3, 4, 4, 2)]
    [InlineData(2, 1, 2, 2)]
    [InlineData(0, 3, 3, 1)]
    [InlineData(5, 2, 1, 1)]
    public void H2OEqualsItsNaiveTwinInKeptSetsAndOutputs(int heavy, int recent, int hq, int hkv)
    {
        using var scope = NewDisposeScope();
        const int T = 24;
        var (q, k, v) = Inputs(2, T, hq, hkv, 6, 3, float64, 54 + heavy);
        q *= 3;                                                                       // sharper attention: heads disagree more
        using var cache = new PolicyKvCache(KvPolicy.H2O(heavy, recent));
        var (outputs, kept) = Decode(cache, q, k, v);
        var (naiveOut, naiveKept) = NaiveH2O(q, k, v, heavy, recent);
        for (int step = 0; step < T; step++)
        {
            Assert.Equal(naiveKept[step].GetLength(2), kept[step].GetLength(2));
            Assert.Equal(naiveKept[step].Cast<long>(), kept[step].Cast<long>());
        }
        var expected = torch.tensor(naiveOut.Cast<double>().ToArray(), dtype: float64).reshape(outputs.shape);
        AssertClose.Tensors(outputs, expected, atol: 1e-12, rtol: 0, what: $"H2O({heavy}, {recent}) outputs");
        // The kept sets differ between heads somewhere (per-head eviction), unless there is no heavy part or one head.
        if (heavy > 0 && hkv > 1)
            Assert.Contains(kept, s => Enumerable.Range(0, s.GetLength(2)).Any(i => s[0, 0, i] != s[0, 1, i]));
    }

    [Fact]
    public void H2OWithoutHeavyHittersIsASlidingWindowAndWithABigBudgetIsFull()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Inputs(1, 15, 2, 2, 8, 4, float32, 55);
        using var window = new PolicyKvCache(KvPolicy.H2O(heavy: 0, recent: 4));
        using var masked = ReferenceAttention.Softmax(q, k, v, mask: AttentionMasks.SlidingWindow(15, 15, 4));
        AssertClose.Tensors(Decode(window, q, k, v).Outputs, masked.Output, atol: 1e-6, rtol: 0, what: "H2O(0, 4) vs window mask");
        using var big = new PolicyKvCache(KvPolicy.H2O(heavy: 10, recent: 5));
        using var full = new PolicyKvCache(KvPolicy.Full);
        Assert.True(TensorAssert.Same(Decode(big, q, k, v).Outputs, Decode(full, q, k, v).Outputs));
    }

    [Fact]
    public void StatsCountAttendedTokensAndBytes()
    {
        using var scope = NewDisposeScope();
        const int T = 12, B = 2, Hq = 4, Hkv = 2, D = 8, Dv = 5;
        var (q, k, v) = Inputs(B, T, Hq, Hkv, D, Dv, float32, 56);
        foreach (var policy in new[] { KvPolicy.Full, KvPolicy.SinkWindow(4, 2), KvPolicy.H2O(2, 3) })
        {
            using var cache = new PolicyKvCache(policy, layer: 3);
            Decode(cache, q, k, v);
            long perEntry = B * Hkv * (D + Dv) * sizeof(float);
            Assert.Equal(T, cache.Trace.Count);
            for (int s = 0; s < T; s++)
            {
                var st = cache.Trace[s];
                long attended = Math.Min(s + 1, policy.Budget ?? long.MaxValue);
                Assert.Equal(3, st.Layer);
                Assert.Equal(s, st.Step);
                Assert.Equal(Enumerable.Repeat(attended, Hq), st.AttendedTokens);
                Assert.Equal(attended * perEntry, st.KvBytesRead);
                Assert.Equal(attended * perEntry, st.KvBytesHeld);
                Assert.True(st.KvBytesAllocated >= st.KvBytesHeld);
                if (policy.Budget is { } budget) Assert.Equal((budget + 1) * perEntry, st.KvBytesAllocated);
            }
            Assert.Equal(cache.Trace.Sum(x => x.KvBytesRead), new DecodeTrace(cache.Trace).TotalBytesRead);
            var df = new DecodeTrace(cache.Trace).ToDataFrame();
            Assert.Equal(T, df.Rows.Count);
            Assert.Equal(Math.Min(T, policy.Budget ?? T) * perEntry, (long)df["kv_bytes_held"][T - 1]);
        }
    }

    [Fact]
    public void CustomAttentionAndManualObserveWork()
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Inputs(1, 9, 2, 1, 8, 4, float32, 57);
        using var cache = new PolicyKvCache(KvPolicy.Full, attention: (qq, kk, vv) => AttentionVariants.Softmax1(qq, kk, vv));
        using var full = AttentionVariants.Softmax1(q, k, v, causal: true);
        AssertClose.Tensors(Decode(cache, q, k, v).Outputs, full.Output, atol: 1e-6, rtol: 0, what: "softmax₁ decode");

        // The three-call protocol a RoPE model uses: Append, attend to Keys itself, Observe.
        using var manual = new PolicyKvCache(KvPolicy.H2O(1, 2));
        using var auto = new PolicyKvCache(KvPolicy.H2O(1, 2));
        for (long t = 0; t < 9; t++)
        {
            var (qt, kt, vt) = (q.narrow(1, t, 1), k.narrow(1, t, 1), v.narrow(1, t, 1));
            manual.Append(kt, vt);
            Assert.Equal(manual.Count, manual.CachePositions.shape[0]);
            using var att = ReferenceAttention.Softmax(qt, manual.Keys, manual.Values);
            manual.Observe(att.Probabilities);
            Assert.True(TensorAssert.Same(att.Output, auto.Attend(qt, kt, vt).Output));
            Assert.True(TensorAssert.Same(manual.TokenPositions, auto.TokenPositions));
        }
    }

    [Fact]
    public void TheCacheOwnsItsTensors()
    {
        void Use()
        {
            using var scope = NewDisposeScope();
            var (q, k, v) = Inputs(2, 20, 2, 2, 4, 3, float32, 58);
            foreach (var policy in new[] { KvPolicy.Full, KvPolicy.SinkWindow(3, 2), KvPolicy.H2O(2, 2) })
            {
                using var cache = new PolicyKvCache(policy);
                Decode(cache, q, k, v);
            }
        }
        LeakCheck.AssertNoLeak(Use, "policy KV caches");
    }

    [Fact]
    public void BadInputsNameTheArgument()
    {
        using var scope = NewDisposeScope();
        using var cache = new PolicyKvCache(KvPolicy.Full);
        void Throws(string name, Action call) => Assert.Equal(name, Assert.ThrowsAny<ArgumentException>(call).ParamName);
        var q = torch.randn(1, 1, 4, 8); var k = torch.randn(1, 1, 2, 8); var v = torch.randn(1, 1, 2, 5);
        Throws("q", () => cache.Attend(torch.randn(1, 2, 4, 8), k, v));
        Throws("k", () => cache.Attend(q, torch.randn(1, 1, 3, 8), torch.randn(1, 1, 3, 5)));
        Throws("k", () => cache.Attend(q, torch.randn(1, 2, 2, 8), torch.randn(1, 2, 2, 5)));
        Throws("v", () => cache.Attend(q, k, torch.randn(1, 1, 1, 5)));
        Throws("q", () => cache.Attend(torch.randn(4, 8), k, v));
        cache.Attend(q, k, v);
        Throws("k", () => cache.Append(torch.randn(2, 1, 2, 8), torch.randn(2, 1, 2, 5)));   // batch differs from the first append
        Throws("v", () => cache.Append(k, torch.randn(1, 1, 2, 6)));
        Throws("k", () => cache.Append(k.to(float64), v.to(float64)));
        Throws("probabilities", () => cache.Observe(torch.ones(1, 4, 1, 7)));
        Assert.Equal(1, cache.Count);
        Throws("window", () => KvPolicy.SinkWindow(0));
        Throws("nSink", () => KvPolicy.SinkWindow(4, -1));
        Throws("recent", () => KvPolicy.H2O(2, 0));
        Throws("heavy", () => KvPolicy.H2O(-1, 2));
    }
}
