using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using AttentionLab.Papers.LandmarkAttention;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Papers;

public class LandmarkAttentionTests
{
    static Tensor Scores(int b, int h, int t, ulong seed = 3, bool grad = false) =>
        (torch.randn(new long[] { b, h, t, t }, dtype: ScalarType.Float64, generator: new Generator(seed)) * 2).requires_grad_(grad);

    static Tensor Marks(int b, int t, int blockSize) => LandmarkTokens.Mask(t, blockSize).unsqueeze(0).expand(b, t).contiguous();

    static void Close(Tensor a, Tensor b, double tol, string what) =>
        Assert.True(a.allclose(b, rtol: tol, atol: tol), $"{what}: max |Δ| = {(a - b).abs().max().to(ScalarType.Float64).item<double>():E2}");

    [Fact]
    public void InsertPlacesLandmarksAndMasksTheirLabels()
    {
        using var scope = NewDisposeScope();
        var ids = torch.arange(10L).view(1, 10) + 3;
        var (x, marks) = LandmarkTokens.Insert(ids, 4, landmarkId: 99);
        Assert.Equal(new long[] { 3, 4, 5, 6, 99, 7, 8, 9, 10, 99, 11, 12 }, x[0].data<long>().ToArray());
        Assert.Equal(new[] { 4, 9 }, Enumerable.Range(0, 12).Where(i => marks[0, i].item<bool>()).ToArray());
        var labels = LandmarkTokens.InsertLabels(ids + 1, 4);
        Assert.Equal(new long[] { 4, 5, 6, 7, -100, 8, 9, 10, 11, -100, 12, 13 }, labels[0].data<long>().ToArray());
        Assert.Equal(ids.data<long>().ToArray(), LandmarkTokens.Remove(x, 4)[0].data<long>().ToArray());
        Assert.Equal(12, LandmarkTokens.InsertedLength(10, 4));
    }

    static Tensor N(Generator g, ScalarType dtype, params long[] size) => torch.randn(size, generator: g, dtype: ScalarType.Float64).to(dtype);

    /// <summary>
    /// The grouped softmax weights (block view) against LandmarkNaive on the weights and d scores; scores [B, H, T, T] ~ 2·N(0, 1),
    /// ℓ_b = the grid's chunk (ℓ_b = 1, ℓ_b ∤ T, ℓ_b ≥ T included); the grid's D, Dv are unused. float64 1e−13·(1 + max|ref|)
    /// (no looser than the old elementwise 1e−12·(1 + |ref|) while max|ref| ≤ 9), float32 1e−5.
    /// </summary>
    [Theory]
    [MemberData(nameof(Conformance.Shapes), MemberType = typeof(Conformance))]
    public void FastWeightsMatchNaiveOnValuesAndGradients(Shape shape) =>
        Conformance.Check(shape, (s, dtype, g) => [N(g, dtype, s.B, s.H, s.T, s.T) * 2, Marks(s.B, s.T, s.Chunk)],
            new Form("naive", x => new FormOutput(LandmarkNaive.GroupedWeights(x[0], x[1]))),
            [new Form("block view", x => new FormOutput(LandmarkAttention.GroupedWeights(x[0], x[1], shape.Chunk)))], tol64: 1e-13);

    /// <summary>
    /// Training-form attention (block view) against LandmarkNaive.Attend on outputs and d q, k, v; ℓ_b = the grid's chunk.
    /// float64 1e−13·(1 + max|ref|), gradients 1e−12·(1 + max|ref|) (the old elementwise 1e−12 and 1e−11, max|ref| ≤ 9), float32 1e−5.
    /// </summary>
    [Theory]
    [MemberData(nameof(Conformance.Shapes), MemberType = typeof(Conformance))]
    public void FastAttendMatchesNaiveOnOutputsAndGradients(Shape shape) =>
        Conformance.Check(shape,
            (s, dtype, g) => [N(g, dtype, s.B, s.T, s.H, s.D), N(g, dtype, s.B, s.T, s.H, s.D), N(g, dtype, s.B, s.T, s.H, s.Dv), Marks(s.B, s.T, s.Chunk)],
            new Form("naive", x => new FormOutput(LandmarkNaive.Attend(x[0], x[1], x[2], x[3]))),
            [new Form("block view", x => new FormOutput(LandmarkAttention.Attend(x[0], x[1], x[2], shape.Chunk)))], tol64: 1e-13, gradTol64: 1e-12);

    [Fact]
    public void RowsSumToOneLandmarkColumnsAndFutureAreZero()
    {
        using var scope = NewDisposeScope();
        int t = 26, lb = 4;
        var w = LandmarkAttention.GroupedWeights(Scores(2, 3, t), Marks(2, t, lb), lb);
        Close(w.sum(-1), torch.ones(2, 3, t, dtype: ScalarType.Float64), 1e-12, "row sums");
        var marks = LandmarkTokens.Mask(t, lb);
        Assert.Equal(0.0, w.index_select(3, marks.nonzero().squeeze(1)).abs().max().item<double>());
        Assert.Equal(0.0, w.masked_select(torch.ones(t, t, dtype: ScalarType.Bool).triu(1)).abs().max().item<double>());
    }

    /// <summary>P over G(i) by an explicit masked softmax; Σ_{j∈c} w_ij must equal P_{i,L_c}, and w_ij = P_ij in the own block.</summary>
    [Fact]
    public void BlockMassEqualsTheLandmarkProbability()
    {
        using var scope = NewDisposeScope();
        int t = 23, lb = 4, l = lb + 1;
        var s = Scores(1, 2, t, seed: 11);
        var w = LandmarkAttention.GroupedWeights(s, Marks(1, t, lb), lb);
        var g = torch.zeros(t, t, dtype: ScalarType.Bool);
        var own = torch.zeros(t, t, dtype: ScalarType.Bool);
        for (int i = 0; i < t; i++)
            for (int j = 0; j <= i; j++)
            {
                bool landmark = (j + 1) % l == 0;
                if (landmark ? j / l < i / l : j / l == i / l) g[i, j] = true;   // G(i)
                if (!landmark && j / l == i / l) own[i, j] = true;              // own block, ordinary
            }
        var p = torch.softmax(s.masked_fill(g.logical_not(), double.NegativeInfinity), -1);
        for (int i = 0; i < t; i++)
            for (int c = 0; c < i / l; c++)
            {
                for (int h = 0; h < 2; h++)
                    Assert.Equal(p[0, h, i, c * l + lb].item<double>(), w[0, h, i, TensorIndex.Slice(c * l, c * l + lb)].sum().item<double>(), 12);
            }
        var ownMask = own.view(1, 1, t, t).expand(1, 2, t, t);
        Close(w.masked_select(ownMask), p.masked_select(ownMask), 1e-12, "own block w_ij = P_ij");
    }

    [Theory]
    [InlineData(6, 6)]    // T < ℓ_b + 1: no landmark yet
    [InlineData(7, 6)]    // T = ℓ_b + 1: the landmark query must not see itself
    [InlineData(1, 3)]
    public void SingleBlockIsCausalSoftmaxOverOrdinaryTokens(int t, int lb)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(2);
        var (q, k, v) = (torch.randn(new long[] { 2, t, 2, 4 }, dtype: ScalarType.Float64, generator: gen),
                         torch.randn(new long[] { 2, t, 2, 4 }, dtype: ScalarType.Float64, generator: gen),
                         torch.randn(new long[] { 2, t, 2, 4 }, dtype: ScalarType.Float64, generator: gen));
        var keep = LandmarkTokens.Mask(t, lb).logical_not().view(1, 1, 1, t);
        using var reference = ReferenceAttention.Softmax(q, k, v, causal: true, mask: keep);
        Close(LandmarkAttention.Attend(q, k, v, lb), reference.Output, 1e-12, "single block");
    }

    static (TinyGpt Model, Tensor Ids) SmallModel(int blocks, int extra, int blockSize = 4, int layers = 2, int heads = 2, int d = 16, bool rope = true)
    {
        torch.manual_seed(7);
        var cfg = new LandmarkLmConfig(Layers: layers, DModel: d, Heads: heads, TaskVocab: 11, BlockSize: blockSize);
        var model = rope ? cfg.Build() : new TinyGpt(cfg.Gpt with { Positions = PositionKind.None },
            _ => new LandmarkAttentionLayer(d, heads, blockSize, rope: false));
        var raw = torch.randint(0, 11, new long[] { 2, blocks * blockSize + extra }, generator: new Generator(5));
        return (model, LandmarkTokens.Insert(raw, blockSize, cfg.LandmarkId).Ids);
    }

    [Theory]
    [InlineData(1, false, LandmarkSelect.PerTokenAndHead)]
    [InlineData(2, false, LandmarkSelect.PerTokenAndHead)]
    [InlineData(1, false, LandmarkSelect.MaxOverHeads)]
    [InlineData(1, true, LandmarkSelect.PerTokenAndHead)]    // remapping is the identity while every block is retrieved
    [InlineData(3, true, LandmarkSelect.MaxOverHeads)]
    public void MemoryWithAllBlocksEqualsTheTrainingForm(int chunkBlocks, bool remap, LandmarkSelect mode)
    {
        using var scope = NewDisposeScope();
        var (model, ids) = SmallModel(blocks: 6, extra: 3);
        using (model)
        {
            model.eval();
            using var noGrad = torch.no_grad();
            var training = model.call(ids);
            using var run = new LandmarkMemory(TopK: 100, mode, remap, chunkBlocks).Run(model, ids);
            Close(run.Logits, training, 1e-5, "memory vs training form");
        }
    }

    [Fact]
    public void MemoryWithoutPositionsAndAllBlocksEqualsTheTrainingForm()
    {
        using var scope = NewDisposeScope();
        var (model, ids) = SmallModel(blocks: 5, extra: 0, rope: false);
        using (model)
        {
            model.eval();
            using var noGrad = torch.no_grad();
            using var run = new LandmarkMemory(TopK: 5, RemapPositions: true).Run(model, ids);
            Close(run.Logits, model.call(ids), 1e-5, "no-PE memory vs training form");
        }
    }

    /// <summary>
    /// A memory variant: block ℓ_b (fixed, so that long grid shapes store many blocks), k = TopK (+ S, the complete blocks of
    /// the sequence, with <paramref name="PlusS"/>), chunks of ChunkBlocks blocks, the selection rule, remap, slots, RoPE.
    /// </summary>
    public sealed record MemoryCase(string Name, int Block, int TopK, int ChunkBlocks, LandmarkSelect Mode = LandmarkSelect.PerTokenAndHead,
        bool Remap = true, LandmarkSlots Slots = LandmarkSlots.Official, bool Rope = true, bool PlusS = false)
    {
        public override string ToString() => Name;
    }

    public static IEnumerable<object[]> MemoryCases() => Conformance.ShapesWithEach(
        new MemoryCase("ℓ3 k1", 3, 1, 1), new MemoryCase("ℓ4 k1", 4, 1, 1), new MemoryCase("ℓ4 k2", 4, 2, 1),
        new MemoryCase("ℓ4 k2 chunk2 max-over-heads", 4, 2, 2, LandmarkSelect.MaxOverHeads),
        new MemoryCase("ℓ3 k3 contiguous", 3, 3, 1, Slots: LandmarkSlots.Contiguous),
        new MemoryCase("ℓ3 k3 chunk3 max-over-heads contiguous", 3, 3, 3, LandmarkSelect.MaxOverHeads, Slots: LandmarkSlots.Contiguous),
        new MemoryCase("ℓ4 k2 chunk3 no remap", 4, 2, 3, Remap: false), new MemoryCase("ℓ4 k = S", 4, 0, 1, PlusS: true),
        new MemoryCase("ℓ4 k = S + 12 chunk2", 4, 12, 2, PlusS: true), new MemoryCase("ℓ4 k0 chunk2", 4, 0, 2),
        new MemoryCase("ℓ2 k2 no positions", 2, 2, 1, Rope: false), new MemoryCase("ℓ6 k2", 6, 2, 1));

    /// <summary>
    /// The fast memory path against its loop twin (forward only, as inference): k &lt; S, k = S, k &gt; S, k = 0; one or several
    /// heads; chunks of 1–3 blocks; both selection rules; official and contiguous slots; no remap; no positions. q, k, v
    /// [B, T, H, D] ~ 1.5·N(0, 1) (v is read with q's head dim: the grid's Dv is unused; RoPE rotates pairs: an odd grid D
    /// becomes D + 1 with positions). float64 1e−13·(1 + max|ref|) (the old elementwise 1e−12), float32 1e−5 (the spec's)
    /// against the float64 twin.
    /// </summary>
    [Theory]
    [MemberData(nameof(MemoryCases))]
    public void MemoryMatchesTheLoopTwin(Shape shape, MemoryCase p)
    {
        int d = p.Rope && shape.D % 2 == 1 ? shape.D + 1 : shape.D;
        var memory = new LandmarkMemory(p.TopK + (p.PlusS ? shape.T / (p.Block + 1) : 0), p.Mode, p.Remap, p.ChunkBlocks, p.Slots);
        double? ropeBase = p.Rope ? 10000 : null;
        Conformance.Check(shape,
            (s, dtype, g) => [N(g, dtype, s.B, s.T, s.H, d) * 1.5, N(g, dtype, s.B, s.T, s.H, d) * 1.5, N(g, dtype, s.B, s.T, s.H, d) * 1.5],
            new Form("loop twin", x => new FormOutput(LandmarkMemoryNaive.Attend(x[0], x[1], x[2], p.Block, memory, ropeBase)), Gradients: false),
            [new Form($"memory ({memory})", x => new FormOutput(memory.Attend(x[0], x[1], x[2], p.Block, ropeBase)), Gradients: false)],
            tol64: 1e-13, gradients: false);
    }

    /// <summary>The twin, checked without the fast path: with every block retrieved it is the training form (LandmarkNaive, RoPE at true positions).</summary>
    [Theory]
    [InlineData(1, true)]
    [InlineData(3, true)]
    [InlineData(2, false)]
    public void LoopTwinWithAllBlocksIsTheTrainingForm(int chunkBlocks, bool remap)
    {
        using var scope = NewDisposeScope();
        int t = 27, lb = 4;
        var gen = new Generator(8);
        Tensor R() => torch.randn(new long[] { 2, t, 2, 6 }, dtype: ScalarType.Float64, generator: gen);
        var (q, k, v) = (R(), R(), R());
        var pos = torch.arange(t);
        var naive = LandmarkNaive.Attend(Positions.Rope(q, pos), Positions.Rope(k, pos), v, Marks(2, t, lb));
        var twin = LandmarkMemoryNaive.Attend(q, k, v, lb, new LandmarkMemory(t, RemapPositions: remap, ChunkBlocks: chunkBlocks));
        Close(twin, naive, 1e-12, "twin with k ≥ S vs the naive training form");
    }

    /// <summary>
    /// k = 1 &lt; S with the retrieved block forced by its landmark key (head 0: an old block, head 1: a recent one): the last
    /// query's output must be the training form over [that block ; the chunk] at the remapped positions — block at slot
    /// r + [recent] (official) or r + 1 (contiguous), chunk at slot k + 1 — for the fast path and for the twin.
    /// </summary>
    [Theory]
    [InlineData(LandmarkSlots.Official)]
    [InlineData(LandmarkSlots.Contiguous)]
    public void RetrievedBlockSitsAtItsRemappedSlot(LandmarkSlots slots)
    {
        using var scope = NewDisposeScope();
        const int lb = 3, l = lb + 1, stored = 6, t = stored * l + 2, p = t - 1, d = 4;
        var gen = new Generator(17);
        var q = torch.randn(new long[] { 1, t, 2, d }, dtype: ScalarType.Float64, generator: gen);
        var k = torch.randn(new long[] { 1, t, 2, d }, dtype: ScalarType.Float64, generator: gen) * 0.1;
        var v = torch.randn(new long[] { 1, t, 2, d }, dtype: ScalarType.Float64, generator: gen);
        int[] wanted = { 2, 5 };                                              // head 0: old block (scoring slot 0), head 1: recent (slot 1)
        long queryPos = 2 * l + (p - stored * l);                            // chunk at slot k + 1 = 2
        for (int head = 0; head < 2; head++)
        {
            int c = wanted[head];
            long scoreSlot = c >= stored - 1 ? c - (stored - 1) + 1 : 0;
            // R(score) k_L = 20 R(query) q_p  ⇒  k_L = 20 R(query − score) q_p: this landmark wins the retrieval softmax.
            var qp = q[0, p, head].view(1, 1, 1, d);
            k[0, c * l + lb, head] = (Positions.Rope(qp, torch.tensor(new long[] { queryPos - (scoreSlot * l + lb) })) * 20).view(d);
        }
        var memory = new LandmarkMemory(1, Slots: slots);
        var fast = memory.Attend(q, k, v, lb);
        var twin = LandmarkMemoryNaive.Attend(q, k, v, lb, memory);
        for (int head = 0; head < 2; head++)
        {
            int c = wanted[head];
            long slot = slots == LandmarkSlots.Contiguous ? 1 : c >= stored - 1 ? 1 : 0;
            var keep = torch.tensor(Enumerable.Range(c * l, l).Concat(Enumerable.Range(stored * l, t - stored * l)).Select(i => (long)i).ToArray());
            var positions = torch.tensor(Enumerable.Range(0, l).Select(o => slot * l + o).Concat(
                Enumerable.Range(0, t - stored * l).Select(o => 2L * l + o)).ToArray());
            Tensor Head(Tensor x) => x.index_select(1, keep).narrow(2, head, 1);
            var expected = LandmarkAttention.Attend(Positions.Rope(Head(q), positions), Positions.Rope(Head(k), positions), Head(v), lb)[0, -1, 0];
            Close(fast[0, p, head], expected, 1e-12, $"fast, head {head}, block {c}");
            Close(twin[0, p, head], expected, 1e-12, $"twin, head {head}, block {c}");
        }
    }

    [Fact]
    public void FewerBlocksChangeTheOutputOnlyAfterTheFirstKBlocks()
    {
        using var scope = NewDisposeScope();
        var (model, ids) = SmallModel(blocks: 6, extra: 2);
        using (model)
        {
            model.eval();
            using var noGrad = torch.no_grad();
            var training = model.call(ids);
            using var run = new LandmarkMemory(TopK: 2).Run(model, ids);
            long exact = 3 * 5;                                                   // blocks 0–2: S ≤ k, identical
            Close(run.Logits.narrow(1, 0, exact), training.narrow(1, 0, exact), 1e-5, "first k+1 blocks");
            Assert.True((run.Logits - training).abs().max().item<float>() > 1e-4, "k = 2 of 6 blocks changed nothing");
            Assert.Equal(6 + 2 * 5 + 2, run.AttendedTokens);                            // S′ = 6 landmarks, k(ℓ_b+1) = 10, chunk 2
            var cost = LandmarkCost.At(6 * 4 + 2, blockSize: 4, topK: 2, heads: 2, headDim: 8);
            Assert.Equal(run.AttendedTokens, cost.LandmarkTokens);
            Assert.Equal(run.KvBytesPerStep, 2 * cost.LandmarkKvBytes);                  // two layers
            Assert.Equal(32, cost.FullTokens);
        }
    }

    [Fact]
    public void KOneRetrievesTheArgmaxLandmark()
    {
        using var scope = NewDisposeScope();
        var (model, ids) = SmallModel(blocks: 7, extra: 0);
        using (model)
        {
            using var run = new LandmarkMemory(TopK: 1).Run(model, ids);
            // Layer 0's landmark keys are all the same embedding (older ones share one slot): ties, so compare probabilities.
            for (int layer = 0; layer < 2; layer++)
            {
                var probs = run.LastRetrieval[layer]!;
                Assert.True(probs.gather(-1, run.LastSelected[layer]!).squeeze(-1).eq(probs.amax(new long[] { -1 })).all().item<bool>(), $"layer {layer}");
            }
            Assert.True(run.LastSelected[1]!.squeeze(-1).eq(run.LastRetrieval[1]!.argmax(-1)).all().item<bool>(), "layer 1 argmax");
            using var runHeads = new LandmarkMemory(TopK: 1, LandmarkSelect.MaxOverHeads).Run(model, ids);
            var sel = runHeads.LastSelected[1]!.squeeze(-1);                              // [B, H, C]
            Assert.True(sel.eq(runHeads.LastRetrieval[1]!.amax(new long[] { 1 }).argmax(-1).unsqueeze(1)).all().item<bool>(), "max over heads");
        }
        var r = torch.softmax(torch.randn(new long[] { 2, 3, 4, 9 }, generator: new Generator(1)), -1);
        Assert.True(LandmarkMemory.SelectBlocks(r, 1).squeeze(-1).eq(r.argmax(-1)).all().item<bool>());
        var two = LandmarkMemory.SelectBlocks(r, 2);
        Assert.True(two.select(-1, 0).lt(two.select(-1, 1)).all().item<bool>(), "kept blocks are in original order");
        Assert.True(two.eq(r.argmax(-1).unsqueeze(-1)).any(-1).all().item<bool>(), "top-2 holds the argmax");
    }

    [Fact]
    public void BadInputNamesTheArgument()
    {
        using var scope = NewDisposeScope();
        var s = Scores(1, 1, 10);
        var marks = Marks(1, 10, 4);
        Assert.Equal("scores", Assert.Throws<ArgumentException>(() => LandmarkAttention.GroupedWeights(s[0], marks, 4)).ParamName);
        Assert.Equal("scores", Assert.Throws<ArgumentException>(() => LandmarkAttention.GroupedWeights(s.narrow(3, 0, 9), marks, 4)).ParamName);
        Assert.Equal("scores", Assert.Throws<ArgumentException>(() => LandmarkAttention.GroupedWeights(s.to(ScalarType.Int64), marks, 4)).ParamName);
        Assert.Equal("isLandmark", Assert.Throws<ArgumentException>(() => LandmarkAttention.GroupedWeights(s, marks.to(ScalarType.Int64), 4)).ParamName);
        Assert.Equal("isLandmark", Assert.Throws<ArgumentException>(() => LandmarkAttention.GroupedWeights(s, Marks(1, 10, 3), 4)).ParamName);
        Assert.Equal("isLandmark", Assert.Throws<ArgumentException>(() => LandmarkAttention.GroupedWeights(s, Marks(2, 10, 4), 4)).ParamName);
        Assert.Equal("blockSize", Assert.Throws<ArgumentOutOfRangeException>(() => LandmarkAttention.GroupedWeights(s, marks, 0)).ParamName);
        var q = torch.randn(1, 6, 2, 4);
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => LandmarkAttention.Attend(q, torch.randn(1, 5, 2, 4), q, 2)).ParamName);
        Assert.Equal("v", Assert.Throws<ArgumentException>(() => LandmarkAttention.Attend(q, q, q.to(ScalarType.Float64), 2)).ParamName);
        Assert.Equal("ids", Assert.Throws<ArgumentException>(() => LandmarkTokens.Insert(torch.zeros(2, 8), 4, 9)).ParamName);
        Assert.Equal("ids", Assert.Throws<ArgumentException>(() => LandmarkTokens.Insert(torch.zeros(8, dtype: ScalarType.Int64), 4, 9)).ParamName);
        Assert.Equal("blockSize", Assert.Throws<ArgumentOutOfRangeException>(
            () => LandmarkTokens.Insert(torch.zeros(new long[] { 2, 8 }, dtype: ScalarType.Int64), 0, 9)).ParamName);
        Assert.Equal("rope", Assert.Throws<ArgumentException>(() => new LandmarkAttentionLayer(6, 2, 4)).ParamName);
        var (model, ids) = SmallModel(blocks: 2, extra: 0);
        using (model)
        {
            Assert.Equal("TopK", Assert.Throws<ArgumentOutOfRangeException>(() => new LandmarkMemory(-1).Run(model, ids)).ParamName);
            Assert.Equal("Slots", Assert.Throws<ArgumentException>(() => new LandmarkMemory(1, Slots: (LandmarkSlots)7).Run(model, ids)).ParamName);
            var q5 = torch.randn(1, 10, 2, 5);
            Assert.Equal("ropeBase", Assert.Throws<ArgumentException>(() => new LandmarkMemory(1).Attend(q5, q5, q5, 4)).ParamName);
            Assert.Equal("ropeBase", Assert.Throws<ArgumentException>(() => LandmarkMemoryNaive.Attend(q5, q5, q5, 4, new LandmarkMemory(1))).ParamName);
            Assert.Equal("k", Assert.Throws<ArgumentException>(() => new LandmarkMemory(1).Attend(q5, q5.narrow(1, 0, 9), q5, 4, null)).ParamName);
            Assert.Equal("memory", Assert.Throws<ArgumentNullException>(() => LandmarkMemoryNaive.Attend(q5, q5, q5, 4, null!, null)).ParamName);
            Assert.Equal("ids", Assert.Throws<ArgumentException>(() => new LandmarkMemory(1).Run(model, ids[0])).ParamName);
            using var plain = new TinyGpt(new TinyGptConfig(VocabSize: 12, DModel: 16, Heads: 2, Positions: PositionKind.Rope));
            Assert.Equal("model", Assert.Throws<ArgumentException>(() => new LandmarkMemory(1).Run(plain, ids)).ParamName);
        }
    }

    [Fact]
    public void TrainingStepAndMemoryRunDoNotLeak()
    {
        var (model, ids) = SmallModel(blocks: 4, extra: 1);
        using (model)
        using (ids)
        {
            LeakCheck.AssertNoLeak(() =>
            {
                using var scope = NewDisposeScope();
                model.zero_grad();
                model.call(ids).square().mean().backward();
            }, "landmark training step");
            LeakCheck.AssertNoLeak(() => new LandmarkMemory(TopK: 2).Run(model, ids).Dispose(), "landmark memory run");
            using var q = torch.randn(2, 23, 2, 4);
            LeakCheck.AssertNoLeak(() => new LandmarkMemory(TopK: 2, ChunkBlocks: 2).Attend(q, q, q, 4).Dispose(), "one layer's memory attention");
            var qkv = model.Blocks[0].Mixer.parameters().First();
            Assert.True(qkv.grad is not null && qkv.grad.abs().sum().item<float>() > 0, "no gradient reached the landmark mixer");
        }
    }
}
