using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Papers.SinkLora;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

/// <summary>
/// P09 SinkLoRA: S2-Attn (roll, no-wrap) and SF-Attn masks in the mixer against their loop twin over the awkward-shape grid
/// (T not a multiple of G throws in both), the causality probe, mask rules, LoRA and H2O identities, bad input.
/// </summary>
public class SinkLoraTests
{
    public static readonly string[] Forms = ["S2Roll", "S2NoWrap", "SinkFixed"];

    public static IEnumerable<object[]> GridForms() => Conformance.ShapesWithEach(Forms.Cast<object>().ToArray());

    static SinkLoraChecks.Form Parse(string form) => Enum.Parse<SinkLoraChecks.Form>(form);

    /// <summary>
    /// The shape's chunk is the group size G. Where it divides T the mixer's core equals the twin (outputs and the gradients of
    /// q, k, v, float64 at 1e-10 and float32 against the float64 twin); where it does not, both throw ArgumentException (LongLoRA
    /// asserts q_len % group_size == 0), and G = T (one group, any T) is compared instead.
    /// </summary>
    [Theory]
    [MemberData(nameof(GridForms))]
    public void MaskedMixerEqualsTheLoopTwin(Shape shape, string form)
    {
        var f = Parse(form);
        var sizes = new List<int>();
        if (shape.T % shape.Chunk == 0) sizes.Add(shape.Chunk);
        else
        {
            torch.manual_seed(1);
            using var bad = SinkLoraChecks.Mixer(f, shape.H * 2, shape.H, shape.Chunk, sinks: 2, keyDim: shape.D, valueDim: shape.Dv);
            bad.to(float64);
            using var q = torch.randn(shape.B, shape.T, shape.H, shape.D, dtype: float64);
            using var v = torch.randn(shape.B, shape.T, shape.H, shape.Dv, dtype: float64);
            var e1 = Assert.Throws<ArgumentException>(() => SinkLoraChecks.Core(bad, q, q, v));
            Assert.Contains("multiple of the group size", e1.Message);
            var e2 = Assert.Throws<ArgumentException>(() => SinkLoraNaive.ForMixer(bad, q, q, v));
            Assert.Contains("multiple of the group size", e2.Message);
            sizes.Add(shape.T);
        }
        foreach (int g in sizes)
        {
            torch.manual_seed(shape.T * 31 + g);
            var mixer = SinkLoraChecks.Mixer(f, shape.H * 2, shape.H, g, sinks: 2, keyDim: shape.D, valueDim: shape.Dv);
            Conformance.Check(shape, (s, dtype, gen) =>
            [
                torch.randn(new long[] { s.B, s.T, s.H, s.D }, generator: gen, dtype: float64).to(dtype),
                torch.randn(new long[] { s.B, s.T, s.H, s.D }, generator: gen, dtype: float64).to(dtype),
                torch.randn(new long[] { s.B, s.T, s.H, s.Dv }, generator: gen, dtype: float64).to(dtype),
            ], new Form("loop twin", x => new FormOutput(SinkLoraNaive.ForMixer(mixer, x[0], x[1], x[2]))),
            [new Form($"{form} masked mixer (G {g})", x => new FormOutput(SinkLoraChecks.Core(mixer, x[0], x[1], x[2])))]);
            mixer.Dispose();
        }
    }

    [Theory]
    [InlineData("S2Roll")]
    [InlineData("S2NoWrap")]
    [InlineData("SinkFixed")]
    public void RopeAtAbsolutePositionsWithInterpolationEqualsTheTwinOnRotatedInputs(string form)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(2);
        using var mixer = SinkLoraChecks.Mixer(Parse(form), 16, 4, 4, sinks: 2, positions: PositionKind.Rope, ropeScale: 0.25);
        mixer.to(float64);
        var gen = new Generator(3);
        var q = torch.randn(new long[] { 2, 12, 4, 4 }, generator: gen, dtype: float64);
        var k = torch.randn(new long[] { 2, 12, 4, 4 }, generator: gen, dtype: float64);
        var v = torch.randn(new long[] { 2, 12, 4, 4 }, generator: gen, dtype: float64);
        var pos = torch.arange(12);
        var twin = SinkLoraNaive.ForMixer(mixer, Positions.Rope(q, pos, 10000, 0.25), Positions.Rope(k, pos, 10000, 0.25), v);
        Assert.True((SinkLoraChecks.Core(mixer, q, k, v) - twin).abs().max().item<double>() <= 1e-12);
    }

    [Fact]
    public void ExactnessPhaseHolds()
    {
        var ex = SinkLoraExperiment.Exactness();
        Assert.True(ex.S2RollTwin <= 1e-10 && ex.S2NoWrapTwin <= 1e-10 && ex.SinkFixedTwin <= 1e-10, ex.ToString());
        Assert.True(ex.RollLeak > 1e-6, $"the roll variant must leak: {ex.RollLeak}");
        Assert.True(ex.NoLeakChange < 1e-6, $"no-wrap and SF must not leak: {ex.NoLeakChange}");
        Assert.Equal(0, ex.MaskViolations);
        Assert.True(ex.LoraZeroB <= 1e-12 && ex.LoraMerge <= 1e-10, ex.ToString());
        Assert.True(ex.H2OVsFullDecode <= 1e-5 && ex.H2OVsForward <= 1e-5, ex.ToString());
        Assert.True(ex.ToyMaxHeld <= ex.ToyBudget && ex.ToyMaxHeld == ex.ToyBudget, $"{ex.ToyMaxHeld} of {ex.ToyBudget}");
    }

    [Fact]
    public void RollMaskShowsTheWrapAsATopRightBlock()
    {
        using var m = GroupMasks.GroupLocal(16, 4, shifted: true, wrap: true);
        // the first s = 2 tokens share the rolled last group with tokens 14, 15 and see them (future keys)
        Assert.True(m[0, 14].item<bool>() && m[1, 15].item<bool>());
        Assert.False(m[14, 0].item<bool>());                                            // … and the last tokens do not see the first
        using var noWrap = GroupMasks.GroupLocal(16, 4, shifted: true, wrap: false);
        Assert.False(noWrap[0, 14].item<bool>());
        Assert.True(noWrap[3, 2].item<bool>() && !noWrap[2, 1].item<bool>());           // blocks [0, 2), [2, 6), …
        using var sf = GroupMasks.SinkFixed(16, 4, 4, 4);
        Assert.True(sf[3, 15, 0].item<bool>() && sf[0, 15, 3].item<bool>());            // sinks visible to every later query in every head
        Assert.Equal(0.25, GroupMasks.CausalFraction(GroupMasks.GroupLocal(256, 64, false, false)), 2);
    }

    [Fact]
    public void GroupMixerMatchesFullAttentionWhenOneGroupCoversTheSequence()
    {
        // plain heads with G = T are causal attention: the first half of the heads of an S2 mixer equals CausalSelfAttention there
        using var scope = NewDisposeScope();
        torch.manual_seed(4);
        using var mixer = new ShiftedSparseAttention(16, 4, 8, S2Mode.NoWrap, PositionKind.Rope, ropeScale: 0.5);
        using var full = new CausalSelfAttention(16, 4, PositionKind.Rope, ropeScale: 0.5);
        mixer.to(float64); full.to(float64);
        SinkLoraExperiment.CopyWeights(full, mixer);
        var x = torch.randn(2, 8, 16, dtype: float64);
        var (q, k, v) = mixer.Project(x);
        var pos = torch.arange(8);
        var a = mixer.Attend(q, k, v, pos, pos).Z.narrow(2, 0, 2);
        var b = full.Attend(q, k, v, pos, pos).Z.narrow(2, 0, 2);
        Assert.True((a - b).abs().max().item<double>() <= 1e-12);
    }

    [Fact]
    public void KvBytesPerTokenMatchesTheLiveCache()
    {
        var cfg = SinkLoraExperiment.Config.Smoke.ExtendedModel;
        Assert.Equal(2L * cfg.Layers * cfg.DModel * 4, SinkLoraCost.KvBytesPerToken(cfg));
        Assert.Equal(SinkLoraCost.KvBytesPerToken(cfg), SinkLoraCost.MeasureKvBytesPerToken(cfg));
    }

    [Fact]
    public void TaskRepeatsEarlierSegmentsAndIsSeeded()
    {
        var task = new SegmentRecallLm(VocabSize: 32, SegmentLength: 8, RepeatProbability: 1.0);
        using var a = task.Generate(3, 40, seed: 5);
        using var b = task.Generate(3, 40, seed: 5);
        Assert.Equal(a.Tokens.data<long>().ToArray(), b.Tokens.data<long>().ToArray());
        var row = a.Tokens[0].data<long>().ToArray();
        var labels = a.Labels[0].data<long>().ToArray();
        Assert.Equal(row.Skip(1), labels.Take(39));
        for (int m = 1; m < 5; m++)                                                     // every segment copies an earlier one
        {
            var seg = row.Skip(m * 8).Take(8).ToArray();
            Assert.Contains(Enumerable.Range(0, m), src => row.Skip(src * 8).Take(8).SequenceEqual(seg));
        }
    }

    [Fact]
    public void BadInputIsRefusedByName()
    {
        Assert.Equal("groupSize", Assert.ThrowsAny<ArgumentException>(() => new SinkFixedAttention(16, 4, 0)).ParamName);
        Assert.Equal("sinks", Assert.Throws<ArgumentException>(() => new SinkFixedAttention(16, 4, 4, -1)).ParamName);
        Assert.Equal("positions", Assert.Throws<ArgumentException>(() => new ShiftedSparseAttention(16, 4, 4, S2Mode.NoWrap, PositionKind.Alibi)).ParamName);
        Assert.Equal("mode", Assert.Throws<ArgumentException>(() => new ShiftedSparseAttention(16, 4, 4, (S2Mode)7)).ParamName);
        Assert.Equal("wrap", Assert.Throws<ArgumentException>(() => GroupMasks.GroupLocal(8, 4, shifted: false, wrap: true)).ParamName);
        using var mixer = new SinkFixedAttention(16, 4, 4);
        Assert.False(mixer.CanStream);
        using var x = torch.randn(1, 6, 16);
        Assert.Contains("multiple of the group size", Assert.Throws<ArgumentException>(() => mixer.call(x)).Message);
        using var model = new TinyGpt(new TinyGptConfig(DModel: 16, Heads: 4, VocabSize: 8, Positions: PositionKind.Rope), _ => new SinkFixedAttention(16, 4,
            4));
        Assert.Throws<InvalidOperationException>(() => model.NewState(1));
    }

    [Fact]
    public void PresetsCarryTheirSizeLabels()
    {
        Assert.Equal("smoke", SinkLoraExperiment.Config.For(RunSize.Smoke).Size);
        Assert.Equal("full", SinkLoraExperiment.Config.For(RunSize.Full).Size);
        Assert.Equal(64, SinkLoraExperiment.Config.Smoke.GroupSize);
        Assert.Equal(0.25, SinkLoraExperiment.Config.Smoke.ExtendedModel.RopeScale);
        Assert.Equal(0.125, SinkLoraExperiment.Config.Full.ExtendedModel.RopeScale);
    }
}
