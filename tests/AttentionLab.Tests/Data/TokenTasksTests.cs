using AttentionLab.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Data;

/// <summary>Seeded synthetic token tasks: determinism, layouts, labels, the MQAR gap law, bad inputs.</summary>
public class TokenTasksTests
{
    static long[][] Rows(Tensor t) => Enumerable.Range(0, (int)t.shape[0]).Select(n => t[n].data<long>().ToArray()).ToArray();

    static void AssertDeterministic(Func<int, TokenBatch> make)
    {
        using var a = make(3);
        using var b = make(3);
        using var c = make(4);
        Assert.True(TensorBits.Same(a.Tokens, b.Tokens) && TensorBits.Same(a.Labels, b.Labels), "same seed, different data");
        Assert.False(TensorBits.Same(a.Tokens, c.Tokens), "different seeds, same tokens");
        Assert.Equal(ScalarType.Int64, a.Tokens.dtype);
        Assert.Equal(ScalarType.Int64, a.Labels.dtype);
        Assert.Equal(a.Tokens.shape, a.Labels.shape);
    }

    [Fact]
    public void EveryTaskIsDeterministicPerSeed()
    {
        AssertDeterministic(s => new MqarTask(VocabSize: 64, Length: 32, Pairs: 4).Generate(6, s));
        AssertDeterministic(s => new InductionTask().Generate(6, s));
        AssertDeterministic(s => new PasskeyTask().Generate(6, s));
        AssertDeterministic(s => new MultiHopTask().Generate(6, s));
    }

    [Fact]
    public void MqarLayoutFollowsZoology()
    {
        var task = new MqarTask(VocabSize: 64, Length: 40, Pairs: 6);
        using var batch = task.Generate(50, seed: 1);
        var tokens = Rows(batch.Tokens);
        var labels = Rows(batch.Labels);
        var gaps = Rows(batch.Gaps);
        for (int n = 0; n < 50; n++)
        {
            var kv = Enumerable.Range(0, 6).ToDictionary(i => tokens[n][2 * i], i => tokens[n][2 * i + 1]);
            Assert.Equal(6, kv.Count);                                                  // distinct keys
            Assert.All(kv.Keys, k => Assert.InRange(k, 1, 31));                         // keys in [1, V/2)
            Assert.All(kv.Values, v => Assert.InRange(v, 32, 63));                      // values in [V/2, V)
            Assert.Equal(6, kv.Values.Distinct().Count());
            var queried = Enumerable.Range(0, 40).Where(t => labels[n][t] != TokenBatch.Ignore).Select(t => (long)t).ToArray();
            Assert.Equal(6, queried.Length);                                            // labels only at the P queries
            Assert.Equal(gaps[n].Select(g => 12 + 2 * g).OrderBy(p => p), queried);    // at 2P + 2g
            foreach (var q in queried) Assert.Equal(kv[tokens[n][q]], labels[n][(int)q]);    // the value of the queried key
            Assert.All(tokens[n], t => Assert.InRange(t, 0, 63));
        }
        var filler = tokens.SelectMany(r => r.Skip(12).Where((_, i) => i % 2 == 1)).ToArray();   // odd slots of the query region
        Assert.True(filler.Distinct().Count() > 40, "filler should be random tokens");
        using var zeros = (task with { RandomFiller = false }).Generate(2, seed: 1);
        Assert.Equal(0, Rows(zeros.Tokens)[0][13]);
    }

    [Fact]
    public void MqarQueryGapsFollowThePowerLaw()
    {
        var task = new MqarTask(VocabSize: 256, Length: 64, Pairs: 8);
        int s = task.Slots;                                                              // 24 slots
        var p = Enumerable.Range(1, s).Select(g => Math.Pow(g, 0.01 - 1)).ToArray();     // p(g) ∝ g^{a−1}
        p = p.Select(x => x / p.Sum()).ToArray();
        using var batch = task.Generate(4000, seed: 5);
        var first = Rows(batch.Gaps).Select(r => r[0]).ToArray();                       // the first draw follows p exactly
        var freq = Enumerable.Range(0, s).Select(g => first.Count(x => x == g) / 4000.0).ToArray();
        double tv = 0.5 * freq.Zip(p, (f, q) => Math.Abs(f - q)).Sum();
        double tvUniform = 0.5 * p.Sum(q => Math.Abs(q - 1.0 / s));
        Assert.True(tv < 0.05, $"total variation to the power law {tv:F3}");
        Assert.True(tvUniform > 0.2, $"the law must be far from uniform to make this a test ({tvUniform:F3})");
        Assert.Equal(p, task.GapProbabilities().ToArray(), new DoubleComparer(1e-12));
        var all = Rows(batch.Gaps).SelectMany(r => r).ToArray();
        Assert.True(all.Count(g => g < s / 4) > 2 * all.Count(g => g >= 3 * s / 4), "queries should cluster at small gaps");
    }

    sealed class DoubleComparer(double tol) : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) <= tol;
        public int GetHashCode(double x) => 0;
    }

    [Theory]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void InductionRepeatsTheSegmentAndLabelsTheSecondCopy(bool bos, bool separator)
    {
        var task = new InductionTask(VocabSize: 20, SegmentLength: 6, Bos: bos, Separator: separator);
        using var batch = task.Generate(5, seed: 2);
        int o = bos ? 1 : 0, s = task.SecondCopyStart;
        Assert.Equal(task.Length, batch.Length);
        foreach (var (row, labels) in Rows(batch.Tokens).Zip(Rows(batch.Labels)))
        {
            if (bos) Assert.Equal(InductionTask.BosToken, row[0]);
            if (separator) Assert.Equal(InductionTask.SeparatorToken, row[s - 1]);
            Assert.Equal(row.Skip(o).Take(6), row.Skip(s).Take(6));                       // S … S
            Assert.Equal(6, row.Skip(o).Take(6).Distinct().Count());
            var scored = Enumerable.Range(0, row.Length).Where(t => labels[t] != TokenBatch.Ignore).ToArray();
            Assert.Equal(Enumerable.Range(separator ? s - 1 : s, separator ? 6 : 5), scored);
            foreach (var t in scored) Assert.Equal(row[t + 1], labels[t]);
        }
    }

    [Fact]
    public void InductionWithVariableSegmentLengthsMovesTheCopies()
    {
        var task = new InductionTask(VocabSize: 30, SegmentLength: 8, MinSegmentLength: 3);
        using var batch = task.Generate(40, seed: 7);
        var lengths = new HashSet<int>();
        foreach (var (row, labels) in Rows(batch.Tokens).Zip(Rows(batch.Labels)))
        {
            var scored = Enumerable.Range(0, row.Length).Where(t => labels[t] != TokenBatch.Ignore).ToArray();
            int ln = scored.Length + 1, sn = scored[0], on = sn - ln;                    // L_n − 1 labels from the second copy's start
            Assert.InRange(ln, 3, 8);
            Assert.Equal(task.Length - 1, sn + ln - 1);                                  // the second copy ends the sequence
            Assert.Equal(1 + 2 * (8 - ln), on);                                          // filler fills 2(L − L_n) slots after BOS
            Assert.Equal(row.Skip(on).Take(ln), row.Skip(sn).Take(ln));
            foreach (var t in scored) Assert.Equal(row[t + 1], labels[t]);
            lengths.Add(ln);
        }
        Assert.True(lengths.Count >= 4, $"segment lengths drawn: {string.Join(", ", lengths)}");
        Assert.Equal("MinSegmentLength", Assert.Throws<ArgumentException>(() => (task with { MinSegmentLength = 9 }).Generate(1, 0)).ParamName);
    }

    [Fact]
    public void InductionWithAGapAndARandomOffsetPutsTheCopiesAnywhereAmongRandomTokens()
    {
        var task = new InductionTask(VocabSize: 16, SegmentLength: 8, MinSegmentLength: 3, MaxGap: 6, RandomOffset: true);
        Assert.Equal(1 + 2 * 8 + 6, task.Length);
        using var batch = task.Generate(60, seed: 8);
        var (gaps, firstStarts, secondEnds) = (new HashSet<int>(), new HashSet<int>(), new HashSet<int>());
        foreach (var (row, labels) in Rows(batch.Tokens).Zip(Rows(batch.Labels)))
        {
            Assert.Equal(InductionTask.BosToken, row[0]);
            Assert.DoesNotContain(InductionTask.BosToken, row.Skip(1));
            var scored = Enumerable.Range(0, row.Length).Where(t => labels[t] != TokenBatch.Ignore).ToArray();
            int ln = scored.Length + 1, sn = scored[0];
            Assert.InRange(ln, 3, 8);
            Assert.Equal(Enumerable.Range(sn, ln - 1), scored);
            int on = Enumerable.Range(1, sn - ln).Last(o => row.Skip(o).Take(ln).SequenceEqual(row.Skip(sn).Take(ln)));   // the earlier copy
            int gap = sn - on - ln;
            Assert.InRange(gap, 0, 6);                                                     // g_n random tokens between the copies
            Assert.Equal(ln, row.Skip(on).Take(ln).Distinct().Count());
            foreach (var t in scored) Assert.Equal(row[t + 1], labels[t]);
            gaps.Add(gap); firstStarts.Add(on); secondEnds.Add(sn + ln - 1);
        }
        Assert.True(gaps.Count >= 5, $"gaps drawn: {string.Join(", ", gaps)}");
        Assert.True(firstStarts.Contains(1) && firstStarts.Count >= 8, $"first copy starts: {string.Join(", ", firstStarts)}");
        Assert.True(secondEnds.Count >= 8, $"the second copy must not always end the sequence; ends: {string.Join(", ", secondEnds)}");
        Assert.Equal("MaxGap", Assert.Throws<ArgumentException>(() => (task with { MaxGap = -1 }).Generate(1, 0)).ParamName);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.5)]
    [InlineData(1.0)]
    public void PasskeyPutsTheNeedleAtTheRequestedDepth(double depth)
    {
        var task = new PasskeyTask(VocabSize: 30, Length: 40, NeedleLength: 3, Depth: depth);
        using var batch = task.Generate(4, seed: 3);
        long q = 40 - 3 - 1;
        Assert.Equal(q, batch.QueryPosition);
        Assert.Equal(batch.MarkerPosition + 1, batch.NeedleStart);
        Assert.Equal(3, batch.NeedleLength);
        if (depth == 0) Assert.Equal(1, batch.MarkerPosition);                           // right after BOS
        if (depth == 1) Assert.Equal(q - 1, batch.NeedleStart + 2);                       // ends right before the query
        double fraction = (batch.MarkerPosition - 1) / (double)(q - 1 - 4);
        Assert.Equal(depth, fraction, 1);
        foreach (var (row, labels) in Rows(batch.Tokens).Zip(Rows(batch.Labels)))
        {
            var needle = row.Skip((int)batch.NeedleStart).Take(3).ToArray();
            Assert.Equal(PasskeyTask.MarkerToken, row[batch.MarkerPosition]);
            Assert.Equal(PasskeyTask.QueryToken, row[q]);
            Assert.Equal(needle, row.Skip((int)q + 1));                                    // the answer repeats the needle
            Assert.Equal(needle, labels.Skip((int)q).Take(3));                             // predicted from the position before
            Assert.Equal(3, labels.Count(l => l != TokenBatch.Ignore));
            Assert.Equal(1, row.Count(t => t == PasskeyTask.MarkerToken));
        }
    }

    [Fact]
    public void MultiHopAnswersAreTheEndsOfTheQueriedChains()
    {
        var task = new MultiHopTask(VocabSize: 40, Hops: 3, Distractors: 2);
        using var batch = task.Generate(20, seed: 4);
        var sources = batch.Sources.data<long>().ToArray();
        var answers = batch.Answers.data<long>().ToArray();
        int t = task.Length;
        foreach (var ((row, labels), n) in Rows(batch.Tokens).Zip(Rows(batch.Labels)).Select((r, n) => (r, n)))
        {
            var next = Enumerable.Range(0, task.Edges).ToDictionary(e => row[1 + 2 * e], e => row[2 + 2 * e]);   // src → dst
            long node = row[t - 2];
            Assert.Equal(sources[n], node);
            Assert.Equal(MultiHopTask.QueryToken, row[t - 3]);
            for (int h = 0; h < 3; h++) node = next[node];                                // follow the chain
            Assert.False(next.ContainsKey(node), "the answer ends its chain");
            Assert.Equal(answers[n], node);
            Assert.Equal(node, labels[t - 2]);
            Assert.Equal(node, row[t - 1]);
            Assert.Equal(1, labels.Count(l => l != TokenBatch.Ignore));
        }
    }

    [Fact]
    public void TasksPutTensorsOnTheRequestedDevice()
    {
        using var batch = new MqarTask(VocabSize: 64, Length: 16, Pairs: 2).Generate(2, 0, torch.CPU);
        Assert.Equal(DeviceType.CPU, batch.Tokens.device_type);
        Assert.Equal(DeviceType.CPU, batch.Gaps.device_type);
    }

    [Fact]
    public void BadTaskInputsNameTheArgument()
    {
        string Arg(Action a) => Assert.ThrowsAny<ArgumentException>(a).ParamName!;
        Assert.Equal("Length", Arg(() => new MqarTask(Length: 63).Generate(1, 0)));
        Assert.Equal("Length", Arg(() => new MqarTask(Length: 16, Pairs: 5).Generate(1, 0)));
        Assert.Equal("Pairs", Arg(() => new MqarTask(Pairs: 0).Generate(1, 0)));
        Assert.Equal("VocabSize", Arg(() => new MqarTask(VocabSize: 8, Pairs: 4, Length: 16).Generate(1, 0)));
        Assert.Equal("PowerA", Arg(() => new MqarTask(PowerA: 0).Generate(1, 0)));
        Assert.Equal("count", Arg(() => new MqarTask().Generate(0, 0)));
        Assert.Equal("SegmentLength", Arg(() => new InductionTask(SegmentLength: 1).Generate(1, 0)));
        Assert.Equal("VocabSize", Arg(() => new InductionTask(VocabSize: 5, SegmentLength: 8).Generate(1, 0)));
        Assert.Equal("Depth", Arg(() => new PasskeyTask(Depth: 1.5).Generate(1, 0)));
        Assert.Equal("Length", Arg(() => new PasskeyTask(Length: 8, NeedleLength: 4).Generate(1, 0)));
        Assert.Equal("NeedleLength", Arg(() => new PasskeyTask(NeedleLength: 0).Generate(1, 0)));
        Assert.Equal("VocabSize", Arg(() => new MultiHopTask(VocabSize: 10, Hops: 3, Distractors: 2).Generate(1, 0)));
        Assert.Equal("Hops", Arg(() => new MultiHopTask(Hops: 0).Generate(1, 0)));
        Assert.Equal("count", Arg(() => new MultiHopTask().Generate(-1, 0)));
    }

    [Fact]
    public void LossAndAccuracyScoreOnlyLabelledPositions()
    {
        using var batch = new InductionTask(VocabSize: 10, SegmentLength: 4).Generate(3, seed: 6);
        using var scope = NewDisposeScope();
        var perfect = nn.functional.one_hot(batch.Labels.clamp_min(0), 10).to(float32) * 50;   // right at every labelled position
        Assert.Equal(1.0, batch.Accuracy(perfect));
        Assert.True(batch.Loss(perfect).item<float>() < 1e-6);
    }
}
