using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

public class EncoderDecoderTests
{
    const int Bos = 0, Eos = 1;

    /// <summary>A float64 model with awkward sizes: d = 24, 3 heads of 8, 2 encoder and 3 decoder layers.</summary>
    static EncoderDecoder Model(bool tokens, int targetVocab = 13, int seed = 15)
    {
        torch.manual_seed(seed);
        var config = new EncoderDecoderConfig(TargetVocab: targetVocab, SourceVocab: tokens ? 11 : 0, SourceFeatures: tokens ? 0 : 5,
                                              DModel: 24, Heads: 3, EncoderLayers: 2, DecoderLayers: 3, MlpRatio: 2);
        var model = new EncoderDecoder(config);
        model.to(ScalarType.Float64);
        return model;
    }

    /// <summary>Three sources of lengths 5, 7, 2 padded to 7 (ids or frames), and their mask.</summary>
    static (Tensor Source, Tensor Mask) Sources(EncoderDecoder model)
    {
        long[] lengths = { 5, 7, 2 };
        var mask = torch.zeros(3, 7, ScalarType.Int64);
        for (int i = 0; i < 3; i++) mask[i].narrow(0, 0, lengths[i]).fill_(1);
        var source = model.Config.TokenSource
            ? torch.randint(0, model.Config.SourceVocab, new long[] { 3, 7 }, ScalarType.Int64) * mask    // padding id 0
            : torch.randn(3, 7, model.Config.SourceFeatures, ScalarType.Float64);
        return (source, mask);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void CachedGreedyLogitsEqualTheTeacherForcedForward(bool tokens)
    {
        using var model = Model(tokens);
        using var scope = NewDisposeScope();
        var (source, mask) = Sources(model);
        int eos = EosThatEndsARowEarly(model, source, mask, maxLength: 6);
        using var greedy = model.Greedy(source, mask, Bos, eos, maxLength: 6);
        var steps = greedy.StepLogits;                                                  // [B, L, V]
        long length = steps.size(1);
        Assert.Equal(3, steps.size(0));
        var fed = steps.argmax(-1);                                                     // what each step fed to the next
        var targetIn = torch.cat(new[] { torch.full(3, 1, Bos, ScalarType.Int64), fed.narrow(1, 0, length - 1) }, 1);
        using var noGrad = torch.no_grad();
        var full = model.Logits(source, mask, targetIn);                                // teacher forcing on the decoded prefix
        AssertClose.Tensors(steps, full, atol: 1e-10, rtol: 0, what: "cached step logits vs full forward");
        for (int i = 0; i < 3; i++)
        {
            var row = greedy.Tokens[i];
            Assert.Equal(fed[i].data<long>().Take(row.Length), row);
            Assert.True(row.Length == length || row[^1] == eos, "a row shorter than the run must end at EOS");
            var logP = nn.functional.log_softmax(full[i], -1).gather(1, fed[i].unsqueeze(1)).squeeze(1).narrow(0, 0, row.Length);
            Assert.Equal(logP.sum().item<double>(), greedy.LogProbs[i], 10);
        }
        Assert.Contains(greedy.Tokens, row => row.Length < length);                    // rows of different lengths
    }

    /// <summary>
    /// An EOS id that makes rows finish at different steps: the third token that row 0 decodes when EOS is unreachable
    /// (a first run with EOS = BOS, which the model is not trained to emit, tells it).
    /// </summary>
    static int EosThatEndsARowEarly(EncoderDecoder model, Tensor source, Tensor mask, int maxLength)
    {
        using var probe = model.Greedy(source, mask, Bos, Bos, maxLength);
        var row = probe.Tokens[0];
        int eos = (int)row.Skip(2).Concat(row).First(t => t != Bos);
        return eos;
    }

    [Fact]
    public void StepByStepEqualsTheFullForwardAtEveryPosition()
    {
        using var model = Model(tokens: true);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (source, mask) = Sources(model);
        var target = torch.randint(0, 13, new long[] { 3, 9 }, ScalarType.Int64);      // T = 9, not a power of two
        var full = model.Logits(source, mask, target);
        using var memory = model.Encode(source, mask);
        using var state = model.NewState(3);
        for (int t = 0; t < 9; t++)
        {
            var step = model.Step(memory, state, target.select(1, t));
            AssertClose.Tensors(step, full.select(1, t), atol: 1e-10, rtol: 0, what: $"position {t}");
        }
        Assert.Equal(9, state.Position);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void BeamOfWidthOneIsGreedy(bool tokens)
    {
        using var model = Model(tokens, seed: 3);
        using var scope = NewDisposeScope();
        var (source, mask) = Sources(model);
        int eos = EosThatEndsARowEarly(model, source, mask, maxLength: 8);
        using var greedy = model.Greedy(source, mask, Bos, eos, maxLength: 8);
        var beam = model.Beam(source, mask, Bos, eos, maxLength: 8, width: 1);
        Assert.Contains(greedy.Tokens, row => row.Length < 8 && row[^1] == eos);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(greedy.Tokens[i], beam.Tokens[i]);
            Assert.Equal(greedy.LogProbs[i], beam.LogProbs[i], 10);
        }
    }

    /// <summary>Every target a decoder of vocab 4 can emit within 3 tokens: EOS-terminated ones and the unfinished length-3 ones.</summary>
    static IEnumerable<long[]> AllOutputs(int vocab, int maxLength)
    {
        var frontier = new List<long[]> { Array.Empty<long>() };
        for (int length = 1; length <= maxLength; length++)
        {
            var next = new List<long[]>();
            foreach (var prefix in frontier)
                for (long token = 0; token < vocab; token++)
                {
                    var sequence = prefix.Append(token).ToArray();
                    if (token == Eos || length == maxLength) yield return sequence;
                    else next.Add(sequence);
                }
            frontier = next;
        }
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.0)]
    [InlineData(3.0)]                                                                   // favours full-length outputs
    public void WideBeamFindsTheExhaustiveBest(double lengthPenalty)
    {
        // Independent check of the beam (its scores, cache reordering and finishing): with W ≥ every prefix, beam search is
        // exhaustive; the best of all 40 outputs, each scored by the teacher-forced forward, must be what it returns.
        using var model = Model(tokens: true, targetVocab: 4, seed: 5);
        using var scope = NewDisposeScope();
        var (source, mask) = Sources(model);
        var beam = model.Beam(source, mask, Bos, Eos, maxLength: 3, width: 64, lengthPenalty: lengthPenalty);
        using var noGrad = torch.no_grad();
        var outputs = AllOutputs(4, 3).ToList();
        Assert.Equal(1 + 3 + 9 + 27, outputs.Count);
        for (int i = 0; i < 3; i++)
        {
            var src = source.narrow(0, i, 1);
            var srcMask = mask.narrow(0, i, 1);
            var scored = new Dictionary<string, double>();
            foreach (var output in outputs)
            {
                var targetIn = torch.tensor(new long[] { Bos }.Concat(output.SkipLast(1)).ToArray()).unsqueeze(0);
                var logP = nn.functional.log_softmax(model.Logits(src, srcMask, targetIn)[0], -1);
                double total = logP.gather(1, torch.tensor(output).unsqueeze(1)).sum().item<double>();
                scored[string.Join(",", output)] = total / Math.Pow(output.Length, lengthPenalty);
            }
            var best = scored.MaxBy(kv => kv.Value);
            Assert.Equal(best.Key, string.Join(",", beam.Tokens[i]));
            Assert.Equal(best.Value, beam.Scores[i], 9);
            // every output is a hypothesis (W = 64 ≥ 40), each scored as teacher forcing scores it, best first
            Assert.Equal(outputs.Count, beam.Hypotheses[i].Count);
            foreach (var hypothesis in beam.Hypotheses[i])
                Assert.Equal(scored[string.Join(",", hypothesis.Tokens)], hypothesis.Score, 9);
            Assert.Equal(beam.Hypotheses[i].Select(h => h.Score).OrderByDescending(x => x), beam.Hypotheses[i].Select(h => h.Score));
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void BeamLogProbsAreTheTeacherForcedScoresOfItsOutputs(bool tokens)
    {
        // EOS = BOS, which the untrained model rarely emits, so the outputs run long and every step's cache reordering matters.
        using var model = Model(tokens, seed: 9);
        using var scope = NewDisposeScope();
        var (source, mask) = Sources(model);
        var beam = model.Beam(source, mask, Bos, eos: Bos, maxLength: 7, width: 3);
        using var noGrad = torch.no_grad();
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(3, beam.Hypotheses[i].Count);
            foreach (var hypothesis in beam.Hypotheses[i])
            {
                var output = hypothesis.Tokens;
                Assert.True(output.Length >= 3, $"row {i} should run past two tokens, got {output.Length}");
                var targetIn = torch.tensor(new long[] { Bos }.Concat(output.SkipLast(1)).ToArray()).unsqueeze(0);
                var logP = nn.functional.log_softmax(model.Logits(source.narrow(0, i, 1), mask.narrow(0, i, 1), targetIn)[0], -1);
                Assert.Equal(logP.gather(1, torch.tensor(output).unsqueeze(1)).sum().item<double>(), hypothesis.LogProb, 10);
                Assert.Equal(hypothesis.LogProb, hypothesis.Score);                      // α = 0: the score is the log-probability
            }
        }
    }

    [Fact]
    public void CrossAttentionPatternsSumToOneAndIgnoreSourcePadding()
    {
        using var model = Model(tokens: false);
        using var scope = NewDisposeScope();
        var (source, mask) = Sources(model);
        var target = torch.randint(0, 13, new long[] { 3, 4 }, ScalarType.Int64);
        var hooked = model.WithSource(source, mask);
        var (logits, cache) = hooked.RunWithCache(target);
        using (cache)
        {
            using var noGrad = torch.no_grad();
            AssertClose.Tensors(logits, model.Logits(source, mask, target), atol: 0, rtol: 0, what: "hooks change nothing");
            var padding = mask.eq(0).view(3, 1, 1, 7);
            for (int l = 0; l < 3; l++)
            {
                var cross = cache["pattern", l, "cross_attn"];                            // blocks.{l}.cross_attn.hook_pattern
                Assert.Equal(new long[] { 3, 3, 4, 7 }, cross.shape);                      // [B, H, Tdec, Tenc]
                AssertClose.Tensors(cross.sum(-1), torch.ones(3, 3, 4, ScalarType.Float64), atol: 1e-12, rtol: 0, what: $"cross rows, layer {l}");
                Assert.Equal(0, cross.masked_select(padding.expand_as(cross)).abs().max().item<double>());
                Assert.Equal(new long[] { 3, 3, 4, 4 }, cache["pattern", l].shape);        // the decoder's causal self-attention
                Assert.Equal(0, cache["pattern", l].triu(1).abs().max().item<double>());
            }
            var encoderPattern = cache["encoder.blocks.1.attn.hook_pattern"];             // [B, H, Tenc, Tenc]
            Assert.Equal(0, encoderPattern.masked_select(padding.expand_as(encoderPattern)).abs().max().item<double>());
            Assert.True(cache.Contains("blocks.2.hook_cross_attn_out") && cache.Contains("blocks.0.cross_attn.hook_k"));
        }
        // padded vs separate: each row's logits equal a run on its unpadded source alone
        using var noGrad2 = torch.no_grad();
        var batched = model.Logits(source, mask, target);
        long[] lengths = { 5, 7, 2 };
        for (int i = 0; i < 3; i++)
        {
            var alone = model.Logits(source.narrow(0, i, 1).narrow(1, 0, lengths[i]), null, target.narrow(0, i, 1));
            AssertClose.Tensors(batched.narrow(0, i, 1), alone, atol: 1e-10, rtol: 0, what: $"row {i} padded vs alone");
        }
    }

    [Fact]
    public void ActNameReachesCrossAttention()
    {
        Assert.Equal("blocks.1.cross_attn.hook_pattern", ActName.Get("pattern", 1, "cross_attn"));
        Assert.Equal("blocks.1.cross_attn.hook_pattern", ActName.Get("attn", 1, "cross"));
        Assert.Equal("blocks.0.cross_attn.hook_q", ActName.Get("query", 0, "cross_attn"));
        Assert.Equal("blocks.1.attn.hook_pattern", ActName.Get("pattern", 1));
        Assert.Equal("blocks.1.attn.hook_pattern", ActName.Get("pattern", 1, "a"));
        Assert.Equal("blocks.1.ln2.hook_normalized", ActName.Get("normalized", 1, "ln2"));
        Assert.Equal("blocks.0.mlp.hook_post", ActName.Get("post", 0, "cross"));          // MLP names keep their place
    }

    [Fact]
    public void GradientsReachEveryParameterAndTheFrames()
    {
        using var model = Model(tokens: false);
        using var scope = NewDisposeScope();
        var (source, mask) = Sources(model);
        source.requires_grad = true;
        var target = torch.randint(0, 13, new long[] { 3, 5 }, ScalarType.Int64);
        var logits = model.Logits(source, mask, target.narrow(1, 0, 4));
        var loss = nn.functional.cross_entropy(logits.reshape(-1, 13), target.narrow(1, 1, 4).reshape(-1));
        loss.backward();
        foreach (var (name, p) in model.named_parameters())
        {
            Assert.True(p.grad is not null, $"{name} has no gradient");
            Assert.True(p.grad!.isfinite().all().item<bool>(), $"{name} has a non-finite gradient");
            Assert.True(p.grad!.abs().sum().item<double>() > 0, $"{name} has a zero gradient");
        }
        var frameGrad = source.grad!;
        Assert.True(frameGrad.narrow(1, 0, 2).abs().sum().item<double>() > 0, "real frames get gradient");
        Assert.Equal(0, frameGrad[2].narrow(0, 2, 5).abs().max().item<double>());      // padded frames of row 2 do not
    }

    [Fact]
    public void GradientOfAWeightMatchesFiniteDifferences()
    {
        using var model = Model(tokens: true);
        using var scope = NewDisposeScope();
        var (source, mask) = Sources(model);
        var target = torch.randint(0, 13, new long[] { 3, 5 }, ScalarType.Int64);
        var weight = model.Blocks[1].CrossAttention.Qkv.weight!;                       // a cross-attention key row entry
        double Loss()
        {
            var logits = model.Logits(source, mask, target.narrow(1, 0, 4));
            return nn.functional.cross_entropy(logits.reshape(-1, 13), target.narrow(1, 1, 4).reshape(-1)).item<double>();
        }
        var l0 = nn.functional.cross_entropy(model.Logits(source, mask, target.narrow(1, 0, 4)).reshape(-1, 13), target.narrow(1, 1, 4).reshape(-1));
        l0.backward();
        long row = 24 + 3, col = 5;
        double analytic = weight.grad![row, col].item<double>();
        const double h = 1e-6;
        double Shifted(double delta)
        {
            using (torch.no_grad()) weight[row, col] = weight[row, col] + delta;
            double l = Loss();
            using (torch.no_grad()) weight[row, col] = weight[row, col] - delta;
            return l;
        }
        double numeric = (Shifted(h) - Shifted(-h)) / (2 * h);
        Assert.True(Math.Abs(analytic) > 1e-8, "the entry should matter");
        Assert.Equal(numeric, analytic, 6);
    }

    [Fact]
    public void LearnsToCopyItsSourceAndDecodesIt()
    {
        // source ids s ∈ [0, 6), target ids s + 2 (0 = BOS, 1 = EOS): 3 tokens then EOS. 150 AdamW steps on one fixed batch.
        torch.manual_seed(0);
        using var model = new EncoderDecoder(new EncoderDecoderConfig(TargetVocab: 8, SourceVocab: 6, DModel: 32, Heads: 4,
                                                                      EncoderLayers: 1, DecoderLayers: 1));
        using var scope = NewDisposeScope();
        var source = torch.randint(0, 6, new long[] { 32, 3 }, ScalarType.Int64);
        var target = torch.cat(new[] { source + 2, torch.full(32, 1, Eos, ScalarType.Int64) }, 1);          // y₁ y₂ y₃ EOS
        var targetIn = torch.cat(new[] { torch.full(32, 1, Bos, ScalarType.Int64), target.narrow(1, 0, 3) }, 1);
        using var optimizer = torch.optim.AdamW(model.parameters(), lr: 3e-3);
        double first = 0, last = 0;
        for (int step = 0; step < 150; step++)
        {
            using var stepScope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = nn.functional.cross_entropy(model.Logits(source, null, targetIn).reshape(-1, 8), target.reshape(-1));
            loss.backward();
            optimizer.step();
            last = loss.item<float>();
            if (step == 0) first = last;
        }
        Assert.True(last < 0.1 * first, $"loss {first:F3} → {last:F3}");
        using var greedy = model.Greedy(source.narrow(0, 0, 8), null, Bos, Eos, maxLength: 6);
        var beam = model.Beam(source.narrow(0, 0, 8), null, Bos, Eos, maxLength: 6, width: 3);
        for (int i = 0; i < 8; i++)
        {
            Assert.Equal(target[i].data<long>().ToArray(), greedy.Tokens[i]);
            Assert.Equal(target[i].data<long>().ToArray(), beam.Tokens[i]);
        }
    }

    [Fact]
    public void DecodingDoesNotLeak()
    {
        using var model = Model(tokens: true);
        var (source, mask) = Sources(model);
        using (source)
        using (mask)
        {
            LeakCheck.AssertNoLeak(() => { using var g = model.Greedy(source, mask, Bos, Eos, 5); }, "greedy decoding");
            LeakCheck.AssertNoLeak(() => model.Beam(source, mask, Bos, Eos, 5, width: 3), "beam search");
            LeakCheck.AssertNoLeak(() => { using var s = NewDisposeScope(); model.Logits(source, mask, source.narrow(1, 0, 3)); }, "teacher forcing");
        }
    }

    [Fact]
    public void BadInputIsNamed()
    {
        using var model = Model(tokens: true);
        using var scope = NewDisposeScope();
        var (source, mask) = Sources(model);
        var target = torch.zeros(3, 2, ScalarType.Int64);
        string Param(Action a) => Assert.ThrowsAny<ArgumentException>(a).ParamName!;
        Assert.Equal("source", Param(() => model.Logits(source.unsqueeze(-1), null, target)));
        Assert.Equal("source", Param(() => model.Logits(source + 20, null, target)));
        Assert.Equal("sourceMask", Param(() => model.Logits(source, mask.narrow(1, 0, 3), target)));
        Assert.Equal("targetIn", Param(() => model.Logits(source, mask, target + 13)));
        Assert.Equal("targetIn", Param(() => model.Logits(source, mask, target.narrow(0, 0, 2))));
        Assert.Equal("bos", Param(() => model.Greedy(source, mask, 13, Eos, 4)));
        Assert.Equal("eos", Param(() => model.Beam(source, mask, Bos, -1, 4, 2)));
        Assert.Equal("maxLength", Param(() => model.Greedy(source, mask, Bos, Eos, 0)));
        Assert.Equal("width", Param(() => model.Beam(source, mask, Bos, Eos, 4, 0)));
        Assert.Equal("lengthPenalty", Param(() => model.Beam(source, mask, Bos, Eos, 4, 2, double.NaN)));
        Assert.Equal("SourceVocab", Param(() => new EncoderDecoderConfig(TargetVocab: 5, SourceVocab: 3, SourceFeatures: 2).Validate()));
        Assert.Equal("Heads", Param(() => new EncoderDecoderConfig(TargetVocab: 5, SourceVocab: 3, DModel: 10, Heads: 4).Validate()));
        using var frames = Model(tokens: false);
        Assert.Equal("source", Param(() => frames.Logits(torch.randn(3, 7, 4, ScalarType.Float64), null, target)));
        Assert.Equal("source", Param(() => frames.Logits(torch.randn(3, 7, 5), null, target)));          // float32 into a float64 model
    }
}
