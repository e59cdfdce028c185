using AttentionLab.Attention;
using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Attention;

public class DecodeLoopTests
{
    /// <summary>
    /// A two-layer attention-only toy LM with its weights: x_0 = E[token]; per layer x ← x + Attn(x W_q, x W_k, x W_v) W_o.
    /// Forward runs the whole sequence with causal reference attention; Step runs one token through the caches.
    /// </summary>
    sealed class ToyModel
    {
        public const int V = 11, Dm = 8, H = 2, Layers = 2;
        readonly Tensor embed;
        readonly Tensor[] wq, wk, wv, wo;

        public ToyModel(int seed)
        {
            torch.manual_seed(seed);
            embed = torch.randn(V, Dm);
            Tensor W() => torch.randn(Dm, Dm) / Math.Sqrt(Dm);
            (wq, wk, wv, wo) = (Enumerable.Range(0, Layers).Select(_ => W()).ToArray(), Enumerable.Range(0, Layers).Select(_ => W()).ToArray(),
                                Enumerable.Range(0, Layers).Select(_ => W()).ToArray(), Enumerable.Range(0, Layers).Select(_ => W()).ToArray());
        }

        public Tensor Forward(Tensor tokens)                                  // [B, T] → [B, T, Dm]
        {
            long b = tokens.shape[0], t = tokens.shape[1];
            var x = embed.index_select(0, tokens.reshape(-1)).view(b, t, Dm);
            for (int l = 0; l < Layers; l++)
            {
                Tensor Heads(Tensor w) => x.matmul(w).view(b, t, H, Dm / H);
                using var att = ReferenceAttention.Softmax(Heads(wq[l]), Heads(wk[l]), Heads(wv[l]), causal: true);
                x = x + att.Output.reshape(b, t, Dm).matmul(wo[l]);
            }
            return x;
        }

        public Tensor Step(Tensor token, long position, DecodeCaches caches)   // [B] → [B, Dm]
        {
            long b = token.shape[0];
            var x = embed.index_select(0, token);
            for (int l = 0; l < Layers; l++)
            {
                Tensor Heads(Tensor w) => x.matmul(w).view(b, 1, H, Dm / H);
                var r = caches[l].Attend(Heads(wq[l]), Heads(wk[l]), Heads(wv[l]));
                x = x + r.Output.reshape(b, Dm).matmul(wo[l]);
            }
            return x;
        }

        /// <summary>Logits that make the next token (x + 1) mod V, plus a small attention-dependent term.</summary>
        public Tensor CountingStep(Tensor token, long position, DecodeCaches caches) =>
            nn.functional.one_hot((token + 1).remainder(V), V).to(float32) * 100 + Step(token, position, caches).narrow(1, 0, 1);
    }

    [Fact]
    public void FullPolicyDecodeEqualsTheFullForward()
    {
        using var scope = NewDisposeScope();
        var model = new ToyModel(61);
        var tokens = torch.randint(0, ToyModel.V, new long[] { 3, 17 });
        using var run = DecodeLoop.Run(model.Step, tokens, _ => KvPolicy.Full);
        AssertClose.Tensors(run.Outputs, model.Forward(tokens), atol: 1e-5, rtol: 0, what: "cached decode vs full forward");
        Assert.Equal(17 * ToyModel.Layers, run.Trace.Count);
        Assert.Equal(Enumerable.Range(0, 17).SelectMany(s => new[] { (long)s, s }), run.Trace.Select(s => s.Step));
        Assert.Equal(Enumerable.Range(0, 17).SelectMany(_ => new[] { 0, 1 }), run.Trace.Select(s => s.Layer));
    }

    [Fact]
    public void PoliciesArePerLayerAndTheTraceShowsThem()
    {
        using var scope = NewDisposeScope();
        var model = new ToyModel(62);
        var tokens = torch.randint(0, ToyModel.V, new long[] { 1, 12 });
        using var run = DecodeLoop.Run(model.Step, tokens, layer => layer == 0 ? KvPolicy.Full : KvPolicy.SinkWindow(window: 3, nSink: 1));
        var last = run.Trace.Where(s => s.Step == 11).ToDictionary(s => s.Layer);
        Assert.Equal(12, last[0].AttendedTokens[0]);
        Assert.Equal(4, last[1].AttendedTokens[0]);
        Assert.Equal(last[0].KvBytesHeld + last[1].KvBytesHeld, run.Trace.PeakBytesHeld);
        var df = run.Trace.ToDataFrame();
        Assert.Equal(24, df.Rows.Count);
        Assert.Equal(new[] { "layer", "step", "attended_mean", "attended_min", "attended_max", "kv_bytes_held", "kv_bytes_allocated", "kv_bytes_read" },
            df.Columns.Select(c => c.Name));
    }

    [Fact]
    public void GenerateFeedsBackTheArgmax()
    {
        using var scope = NewDisposeScope();
        var model = new ToyModel(63);
        var prompt = torch.tensor(new long[] { 2, 7, 9, 4 }).view(2, 2);
        using var run = DecodeLoop.Generate(model.CountingStep, prompt, maxNew: 5, _ => KvPolicy.H2O(1, 2));
        Assert.Equal(new long[] { 2, 7 }, run.Tokens.shape);
        Assert.Equal(new long[] { 2, 6, ToyModel.V }, run.Outputs.shape);
        var rows = run.Tokens.data<long>().ToArray();
        for (int b = 0; b < 2; b++)
        for (int t = 2; t < 7; t++)
            Assert.Equal((rows[b * 7 + t - 1] + 1) % ToyModel.V, rows[b * 7 + t]);
        Assert.Equal(6 * ToyModel.Layers, run.Trace.Count);
    }

    [Fact]
    public void TheRunOwnsItsTensors()
    {
        var model = new ToyModel(64);
        void Use()
        {
            using var scope = NewDisposeScope();
            var tokens = torch.randint(0, ToyModel.V, new long[] { 2, 9 });
            using (DecodeLoop.Run(model.Step, tokens, _ => KvPolicy.SinkWindow(3, 2))) { }
            using (DecodeLoop.Generate(model.CountingStep, tokens, 3, _ => KvPolicy.H2O(2, 2))) { }
        }
        LeakCheck.AssertNoLeak(Use, "decode loop");
    }

    [Fact]
    public void BadInputsNameTheArgument()
    {
        using var scope = NewDisposeScope();
        var model = new ToyModel(65);
        void Throws(string name, Action call) => Assert.Equal(name, Assert.ThrowsAny<ArgumentException>(call).ParamName);
        Throws("tokens", () => DecodeLoop.Run(model.Step, torch.zeros(5, dtype: int64), _ => KvPolicy.Full));
        Throws("tokens", () => DecodeLoop.Run(model.Step, torch.zeros(1, 5), _ => KvPolicy.Full));
        Throws("prompt", () => DecodeLoop.Generate(model.CountingStep, torch.zeros(1, 0, dtype: int64), 2, _ => KvPolicy.Full));
        Throws("maxNew", () => DecodeLoop.Generate(model.CountingStep, torch.zeros(1, 2, dtype: int64), 0, _ => KvPolicy.Full));
    }
}
