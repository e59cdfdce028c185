using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Models;

/// <summary>Sizes of a <see cref="TinyDiT"/>.</summary>
/// <param name="Channels">image channels (pixel space; no VAE — the "latent" is the image itself).</param>
/// <param name="Patch">patch side p: a token is a p×p×C patch.</param>
/// <param name="DModel">width d.</param>
/// <param name="Heads">attention heads (d / heads must be a multiple of 4 for 2-D RoPE).</param>
/// <param name="Layers">DiT blocks.</param>
/// <param name="MlpRatio">MLP hidden width / d.</param>
/// <param name="Classes">class labels; label = Classes is the null (unconditional) label.</param>
/// <param name="ClassTokens">M: a class becomes M context tokens (a stand-in for a text encoder's sequence).</param>
/// <param name="RopeBase">base of the axial 2-D RoPE.</param>
public sealed record TinyDiTConfig(int Channels = 3, int Patch = 2, int DModel = 64, int Heads = 4, int Layers = 4, int MlpRatio = 2,
    int Classes = 3, int ClassTokens = 4, double RopeBase = 100)
{
    /// <summary>d / heads.</summary>
    public int HeadDim => DModel / Heads;

    /// <summary>Checks every size; throws ArgumentException naming the field.</summary>
    public TinyDiTConfig Validate()
    {
        Guard.Positive(Channels, nameof(Channels)); Guard.Positive(Patch, nameof(Patch)); Guard.Positive(DModel, nameof(DModel));
        Guard.Positive(Heads, nameof(Heads)); Guard.Positive(Layers, nameof(Layers)); Guard.Positive(MlpRatio, nameof(MlpRatio));
        Guard.Positive(Classes, nameof(Classes)); Guard.Positive(ClassTokens, nameof(ClassTokens));
        if (DModel % Heads != 0 || (DModel / Heads) % 4 != 0)
            throw new ArgumentException($"DModel {DModel} / Heads {Heads} must be an integer multiple of 4 (2-D RoPE).", nameof(Heads));
        if (!(RopeBase > 1)) throw new ArgumentException($"RopeBase must be > 1, got {RopeBase}.", nameof(RopeBase));
        return this;
    }
}

/// <summary>A token grid: frames × height × width, token n = (f·H + y)·W + x (row-major, time outermost).</summary>
public readonly record struct TokenGrid(int Frames, int Height, int Width)
{
    /// <summary>Tokens F·H·W.</summary>
    public int Tokens => Frames * Height * Width;
    /// <summary>Tokens per frame H·W.</summary>
    public int PerFrame => Height * Width;
}

/// <summary>
/// The attention a <see cref="TinyDiT"/> forward uses, per layer: self-attention over the token grid and the
/// cross-attention output to the class tokens. The default is plain full softmax attention at scale 1/√d_head and the
/// computed cross-attention; subclasses plug in windowed self-attention, a different scale, or replace the
/// cross-attention output (FreeSwim's dual path). Layout [B, N, H, D_head].
/// </summary>
public class DiTAttention
{
    /// <summary>The default: full attention, scale 1/√d_head, cross-attention as computed.</summary>
    public static readonly DiTAttention Full = new();

    /// <summary>Score scale for self-attention; null = 1/√d_head.</summary>
    public virtual double? Scale => null;

    /// <summary>Self-attention output [B, N, H, D] from RoPE-rotated q, k and v [B, N, H, D].</summary>
    public virtual Tensor SelfAttention(int layer, Tensor q, Tensor k, Tensor v, TokenGrid grid) => TinyDiT.FullAttention(q, k, v, Scale);

    /// <summary>
    /// True when <see cref="SelfAttention"/> is not overridden: full softmax attention at <see cref="Scale"/>, which the
    /// mixer may then compute through its hooked scores → pattern path.
    /// </summary>
    public bool IsFull => isFull ??= GetType().GetMethod(nameof(SelfAttention))!.DeclaringType == typeof(DiTAttention);
    bool? isFull;

    /// <summary>A cross-attention output [B, N, d] to use instead of computing it (a cache), or null to compute it.</summary>
    public virtual Tensor? CrossAttentionReplacement(int layer) => null;

    /// <summary>The cross-attention output [B, N, d] that is added to the residual stream, given the computed one.</summary>
    public virtual Tensor CrossAttentionOutput(int layer, Tensor output) => output;
}

/// <summary>cos/sin tables of the axial 2-D RoPE for a grid, each [1, N, 1, D_head/4]: angle = position · base^{−2i/(D_head/2)}.</summary>
public sealed record RopeTables(Tensor CosY, Tensor SinY, Tensor CosX, Tensor SinX)
{
    /// <summary>Tables for token n = (f·H + y)·W + x: rows use y, columns use x (computed in float64, cast to <paramref name="dtype"/>).</summary>
    public static RopeTables For(TokenGrid grid, int headDim, double @base, ScalarType dtype, Device device)
    {
        var n = torch.arange(grid.Tokens, dtype: ScalarType.Float64, device: device);
        var ys = (n / grid.Width).floor().remainder(grid.Height);                              // y of token n
        var xs = n.remainder(grid.Width);                                                      // x of token n
        int half = headDim / 2;
        var theta = torch.pow(@base, -2.0 * torch.arange(half / 2, dtype: ScalarType.Float64, device: device) / half);   // θ_i
        Tensor Table(Tensor p, bool sin)
        {
            var a = p.unsqueeze(1) * theta.unsqueeze(0);
            return (sin ? a.sin() : a.cos()).to(dtype).view(1, grid.Tokens, 1, half / 2);
        }
        return new RopeTables(Table(ys, false), Table(ys, true), Table(xs, false), Table(xs, true));
    }
}

/// <summary>One DiT block: adaLN-modulated self-attention (2-D RoPE), cross-attention to the class tokens, adaLN-modulated MLP.</summary>
public sealed class TinyDiTBlock : nn.Module
{
    readonly int heads, headDim;
    readonly LayerNorm norm1, norm2, norm3;
    readonly DiTSelfAttention attn;
    readonly Linear crossQ, crossKv, crossProj, fc1, fc2, ada;

    public TinyDiTBlock(TinyDiTConfig c, string name = "block") : base(name)
    {
        heads = c.Heads; headDim = c.HeadDim;
        int d = c.DModel;
        norm1 = nn.LayerNorm(d, elementwise_affine: false); norm2 = nn.LayerNorm(d); norm3 = nn.LayerNorm(d, elementwise_affine: false);
        attn = new DiTSelfAttention(d, heads);                                 // W_QKV then W_O, as before the mixer base
        crossQ = nn.Linear(d, d); crossKv = nn.Linear(d, 2 * d); crossProj = nn.Linear(d, d);
        fc1 = nn.Linear(d, c.MlpRatio * d); fc2 = nn.Linear(c.MlpRatio * d, d);
        ada = nn.Linear(d, 6 * d);
        using (no_grad()) { nn.init.zeros_(ada.weight); nn.init.zeros_(ada.bias!); }   // adaLN-Zero: every block starts as identity
        RegisterComponents();
    }

    /// <summary>The self-attention mixer (hook_q/k/v, hook_rot_q/k, hook_attn_scores, hook_pattern, hook_z; W_Q … W_O).</summary>
    public DiTSelfAttention Attention => attn;

    /// <summary>
    /// x [B, N, d], c [B, d] (time embedding), context [B, M, d], the grid's RoPE tables.
    /// </summary>
    /// <remarks>
    /// (β₁, γ₁, α₁, β₂, γ₂, α₂) = W_ada SiLU(c);  h = x + α₁ ⊙ SelfAttn(LN(x)(1 + γ₁) + β₁);
    /// h = h + CrossAttn(LN(h), context);  out = h + α₂ ⊙ MLP(LN(h)(1 + γ₂) + β₂).
    /// </remarks>
    public Tensor Forward(Tensor x, Tensor c, Tensor context, RopeTables rope, TokenGrid grid, int layer, DiTAttention attention)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], n = x.shape[1], d = x.shape[2];
        var mod = ada.call(nn.functional.silu(c)).unsqueeze(1).chunk(6, -1);
        var h = norm1.call(x) * (1 + mod[1]) + mod[0];
        x = x + mod[2] * attn.Forward(h, rope, grid, layer, attention);                 // W_O SelfAttn(h) [B, N, d]

        var cross = attention.CrossAttentionReplacement(layer);
        if (cross is null)
        {
            long m = context.shape[1];
            var cq = crossQ.call(norm2.call(x)).view(b, n, heads, headDim);
            var ckv = crossKv.call(context).view(b, m, 2, heads, headDim);
            var co = TinyDiT.FullAttention(cq, ckv.select(2, 0), ckv.select(2, 1), null).reshape(b, n, d);
            cross = attention.CrossAttentionOutput(layer, crossProj.call(co));
        }
        else if (cross.shape[0] != b) cross = cross.expand(b, -1, -1);
        x = x + cross;

        var hm = norm3.call(x) * (1 + mod[4]) + mod[3];
        x = x + mod[5] * fc2.call(nn.functional.gelu(fc1.call(hm)));
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A DiT layer's self-attention on the <see cref="AttentionMixer"/> base: bidirectional over the token grid, axial 2-D
/// RoPE applied at use (hook_rot_q/k, after hook_q/k as TransformerLens does), and the layer's <see cref="DiTAttention"/>
/// deciding the kernel. Full attention (the default, any <see cref="DiTAttention.Scale"/>) runs through the base's
/// scores → normalise → combine while a hook listens on hook_attn_scores / hook_pattern, and through the fused
/// <see cref="TinyDiT.FullAttention"/> otherwise; a plugged kernel that is not full attention (FreeSwim's windows)
/// computes z itself, and then hook_attn_scores / hook_pattern do not fire (hook_q/k/v/z do).
/// </summary>
/// <remarks>q, k, v = split_h(W_QKV h);  q', k' = R_yx q, R_yx k;  z = Attn(q', k', v);  y = W_O concat_h(z_h).</remarks>
public sealed class DiTSelfAttention : AttentionMixer
{
    readonly HookPoint hook_rot_q = new(), hook_rot_k = new();
    (RopeTables Rope, TokenGrid Grid, int Layer, DiTAttention Kernel)? running;

    public DiTSelfAttention(int dModel, int heads) : base(nameof(DiTSelfAttention), dModel, heads)
    {
        if (KeyDim % 4 != 0) throw new ArgumentException($"axial 2-D RoPE needs a head dim divisible by 4, got {dModel}/{heads}.", nameof(heads));
        RegisterComponents();
    }

    /// <summary>An image model's layer: no decode form.</summary>
    public override bool CanStream => false;

    /// <summary>x [B, N, d] on <paramref name="grid"/> with its RoPE tables → [B, N, d]; <paramref name="kernel"/> decides the attention.</summary>
    public Tensor Forward(Tensor x, RopeTables rope, TokenGrid grid, int layer, DiTAttention kernel)
    {
        ArgumentNullException.ThrowIfNull(rope);
        ArgumentNullException.ThrowIfNull(kernel);
        if (x.shape.Length == 3 && x.shape[1] != grid.Tokens)
            throw new ArgumentException($"x has {x.shape[1]} tokens, the grid {grid.Tokens}.", nameof(x));
        running = (rope, grid, layer, kernel);
        try { return call(x); }
        finally { running = null; }
    }

    protected override Tensor Mix(Tensor q, Tensor k, Tensor v, Tensor x)
    {
        var (rope, grid, layer, kernel) = running ?? throw new InvalidOperationException(
            "DiT self-attention needs its token grid: call Forward(x, rope, grid, layer, kernel), not the one-argument forward.");
        q = hook_rot_q.call(Rope2D(q, rope));                                   // R_yx q
        k = hook_rot_k.call(Rope2D(k, rope));                                   // R_yx k
        if (!kernel.IsFull) return kernel.SelfAttention(layer, q, k, v, grid);
        if (!PatternObserved) return TinyDiT.FullAttention(q, k, v, kernel.Scale);
        var pos = torch.arange(q.shape[1], device: q.device);
        return Attend(q, k, v, pos, pos).Z;
    }

    /// <summary>s_ij = q'_i·k'_j · scale (the kernel's, default 1/√Dh) over every token: no mask.</summary>
    protected override Tensor Scores(Tensor q, Tensor k, Tensor qPos, Tensor kPos, bool cachedKeys) =>
        q.permute(0, 2, 1, 3).matmul(k.permute(0, 2, 3, 1)) * (running?.Kernel.Scale ?? 1.0 / Math.Sqrt(q.shape[3]));

    /// <summary>
    /// Axial 2-D RoPE: the first half of each head's dimensions rotate with the row y, the second half with the column x,
    /// each as <see cref="Positions.Rope"/> (rotate-half pairing) with tables [1, N, 1, D/4] computed once per forward.
    /// </summary>
    internal static Tensor Rope2D(Tensor t, RopeTables r)
    {
        long half = t.shape[3] / 2, quarter = half / 2;
        Tensor Rotate(Tensor u, Tensor cos, Tensor sin)
        {
            var u1 = u.narrow(-1, 0, quarter); var u2 = u.narrow(-1, quarter, quarter);
            return torch.cat(new[] { u1 * cos - u2 * sin, u2 * cos + u1 * sin }, -1);   // x'_i = x_i cos − x_{i+D/2} sin, …
        }
        return torch.cat(new[] { Rotate(t.narrow(-1, 0, half), r.CosY, r.SinY), Rotate(t.narrow(-1, half, half), r.CosX, r.SinX) }, -1);
    }
}

/// <summary>
/// A tiny class-conditional diffusion transformer (DiT) on pixel-space images, trained by flow matching; the image
/// model of the generation papers (P45 FreeSwim; shared with P11, P15, P34). Class labels enter only through
/// cross-attention to M learned class tokens (a stand-in for a text encoder), time through adaLN-Zero.
/// </summary>
/// <remarks>
/// Patchify: x [B, C, H, W] → tokens [B, (H/p)(W/p), C p²] → Linear → d. Positions: axial 2-D RoPE in self-attention
/// only (relative, so any grid size runs; there is no absolute position table to outgrow).
/// Flow matching (rectified flow): x_t = (1 − t) x₀ + t ε, t ∈ [0, 1]; the network predicts the velocity
/// v = ε − x₀; loss ‖v̂(x_t, t, y) − (ε − x₀)‖². Sampling integrates dx/dt = v̂ from t = 1 (noise) to 0 with Euler
/// steps (<see cref="FlowSampler"/>); classifier-free guidance v = v_∅ + g (v_y − v_∅), training drops labels to ∅
/// with probability 0.1.
/// </remarks>
public sealed class TinyDiT : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    readonly Linear patchEmbed, timeIn, timeOut, finalAda, finalOut;
    readonly Embedding classEmbed;
    readonly LayerNorm finalNorm;
    readonly ModuleList<TinyDiTBlock> blocks;

    public TinyDiT(TinyDiTConfig config) : base(nameof(TinyDiT))
    {
        Config = (config ?? throw new ArgumentNullException(nameof(config))).Validate();
        int d = config.DModel, pp = config.Channels * config.Patch * config.Patch;
        patchEmbed = nn.Linear(pp, d);
        timeIn = nn.Linear(d, d); timeOut = nn.Linear(d, d);
        classEmbed = nn.Embedding(config.Classes + 1, config.ClassTokens * d);
        blocks = new ModuleList<TinyDiTBlock>(Enumerable.Range(0, config.Layers).Select(i => new TinyDiTBlock(config, $"block{i}")).ToArray());
        finalNorm = nn.LayerNorm(d, elementwise_affine: false);
        finalAda = nn.Linear(d, 2 * d); finalOut = nn.Linear(d, pp);
        using (no_grad())
        {
            nn.init.normal_(classEmbed.weight!, 0, 0.5);
            nn.init.zeros_(finalAda.weight); nn.init.zeros_(finalAda.bias!); nn.init.zeros_(finalOut.weight); nn.init.zeros_(finalOut.bias!);
        }
        RegisterComponents();
    }

    public TinyDiTConfig Config { get; }

    /// <summary>The null (unconditional) label.</summary>
    public long NullLabel => Config.Classes;

    /// <summary>Velocity with the default (full) attention; see <see cref="Denoise"/>.</summary>
    public override Tensor forward(Tensor x, Tensor t, Tensor labels) => Denoise(x, t, labels, DiTAttention.Full);

    /// <summary>
    /// Predicted velocity v̂ [B, C, H, W] for images x_t [B, C, H, W] (H, W multiples of the patch), times t [B] in [0, 1]
    /// and labels [B] (int64, in [0, Classes]; Classes = null), with <paramref name="attention"/> deciding each layer's
    /// self-attention and cross-attention output.
    /// </summary>
    public Tensor Denoise(Tensor x, Tensor t, Tensor labels, DiTAttention? attention = null)
    {
        Guard.Rank(x, 4, nameof(x), "B, C, H, W");
        Guard.FloatingPoint(x, nameof(x));
        Guard.Dim(x, 1, Config.Channels, nameof(x), "channels");
        int p = Config.Patch;
        if (x.shape[2] % p != 0 || x.shape[3] % p != 0)
            throw new ArgumentException($"x height and width must be multiples of the patch {p}, got shape {Guard.ShapeText(x)}.", nameof(x));
        Guard.Rank(t, 1, nameof(t), "B");
        Guard.Dim(t, 0, x.shape[0], nameof(t), "batch");
        Guard.Rank(labels, 1, nameof(labels), "B");
        Guard.Dim(labels, 0, x.shape[0], nameof(labels), "batch");
        if (labels.dtype != ScalarType.Int64) throw new ArgumentException($"labels must be int64, got {labels.dtype}.", nameof(labels));
        Guard.SameDevice(x, nameof(x), t, nameof(t));
        Guard.SameDevice(x, nameof(x), labels, nameof(labels));
        Guard.TokenIds(labels, Config.Classes + 1, nameof(labels));
        attention ??= DiTAttention.Full;

        using var scope = NewDisposeScope();
        long b = x.shape[0];
        int gh = (int)x.shape[2] / p, gw = (int)x.shape[3] / p, d = Config.DModel;
        var grid = new TokenGrid(1, gh, gw);
        var tokens = patchEmbed.call(Patchify(x, p));                                          // [B, N, d]
        var c = timeOut.call(nn.functional.silu(timeIn.call(TimeFeatures(t.to(x.dtype) * 1000, d))));   // [B, d]
        var context = classEmbed.call(labels).view(b, Config.ClassTokens, d);                  // [B, M, d]
        var rope = RopeTables.For(grid, Config.HeadDim, Config.RopeBase, x.dtype, x.device);
        for (int l = 0; l < blocks.Count; l++) tokens = blocks[l].Forward(tokens, c, context, rope, grid, l, attention);
        var mod = finalAda.call(nn.functional.silu(c)).unsqueeze(1).chunk(2, -1);
        var outTokens = finalOut.call(finalNorm.call(tokens) * (1 + mod[1]) + mod[0]);
        return Unpatchify(outTokens, p, Config.Channels, gh, gw).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Flow-matching loss on clean images x₀ [B, C, H, W] with labels [B]; labels dropped to ∅ with probability <paramref name="dropLabel"/>.
    /// </summary>
    public Tensor FlowMatchingLoss(Tensor x0, Tensor labels, Generator? generator = null, double dropLabel = 0.1)
    {
        using var scope = NewDisposeScope();
        long b = x0.shape[0];
        var t = torch.rand(new long[] { b }, generator: generator).to(x0.device);                 // t ~ U(0, 1)
        var eps = torch.randn(x0.shape, generator: generator).to(x0.device);
        var drop = torch.rand(new long[] { b }, generator: generator).to(x0.device) < dropLabel;
        var y = torch.where(drop, torch.full_like(labels, NullLabel), labels);
        var tt = t.view(b, 1, 1, 1);
        var xt = (1 - tt) * x0 + tt * eps;                                                      // x_t = (1 − t) x₀ + t ε
        var v = Denoise(xt, t, y);
        return nn.functional.mse_loss(v, eps - x0).MoveToOuterDisposeScope();                   // ‖v̂ − (ε − x₀)‖²
    }

    /// <summary>Plain full softmax attention over [B, N, H, D] (the model's fast path; equals <see cref="ReferenceAttention"/>).</summary>
    public static Tensor FullAttention(Tensor q, Tensor k, Tensor v, double? scale)
    {
        using var scope = NewDisposeScope();
        double s = scale ?? 1.0 / Math.Sqrt(q.shape[3]);
        var scores = q.permute(0, 2, 1, 3).matmul(k.permute(0, 2, 3, 1)) * s;                   // [B, H, N, M]
        var o = scores.softmax(-1).matmul(v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3);           // [B, N, H, D]
        return o.MoveToOuterDisposeScope();
    }

    /// <summary>[B, C, H, W] → [B, (H/p)(W/p), C p²], patches row-major.</summary>
    public static Tensor Patchify(Tensor x, int p)
    {
        long b = x.shape[0], c = x.shape[1], gh = x.shape[2] / p, gw = x.shape[3] / p;
        return x.view(b, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * p * p);
    }

    /// <summary>Inverse of <see cref="Patchify"/>.</summary>
    public static Tensor Unpatchify(Tensor tokens, int p, int c, int gh, int gw)
    {
        long b = tokens.shape[0];
        return tokens.view(b, gh, gw, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, gh * p, gw * p);
    }

    /// <summary>Sinusoidal features of a scalar per row: [cos(s ωᵢ), sin(s ωᵢ)], ωᵢ = 10000^{−i/(d/2)}; [B, d].</summary>
    static Tensor TimeFeatures(Tensor s, int d)
    {
        int half = d / 2;
        var freqs = torch.exp(-Math.Log(10000) * torch.arange(half, dtype: s.dtype, device: s.device) / half);
        var angle = s.unsqueeze(1) * freqs.unsqueeze(0);
        return torch.cat(new[] { angle.cos(), angle.sin() }, 1);
    }
}

/// <summary>Euler sampling of a flow-matching <see cref="TinyDiT"/>, with classifier-free guidance.</summary>
public static class FlowSampler
{
    /// <summary>The times t₀ = tStart &gt; t₁ &gt; … &gt; t_steps = 0, evenly spaced.</summary>
    public static double[] Times(double tStart, int steps)
    {
        Guard.Positive(steps, nameof(steps));
        if (!(tStart > 0 && tStart <= 1)) throw new ArgumentOutOfRangeException(nameof(tStart), tStart, "tStart must be in (0, 1].");
        return Enumerable.Range(0, steps + 1).Select(i => tStart * (1 - i / (double)steps)).ToArray();
    }

    /// <summary>Classifier-free guidance v = v_∅ + g (v_y − v_∅); g = 1 returns v_y.</summary>
    public static Tensor Guide(Tensor conditional, Tensor? unconditional, double guidance) =>
        unconditional is null ? conditional.alias() : unconditional + guidance * (conditional - unconditional);

    /// <summary>Renoises clean images to time t: x_t = (1 − t) x + t ε (the start of an image-to-image pass at strength t).</summary>
    public static Tensor Renoise(Tensor x, double t, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        var eps = torch.randn(x.shape, generator: generator, dtype: x.dtype).to(x.device);
        return ((1 - t) * x + t * eps).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Euler steps x ← x + (t_{i+1} − t_i) v from x_start at tStart to 0, one <paramref name="attention"/> for every
    /// pass; with <paramref name="guidance"/> ≠ 1 an unconditional pass (label ∅) runs beside the conditional one.
    /// </summary>
    public static Tensor Sample(TinyDiT model, Tensor xStart, Tensor labels, double tStart, int steps, double guidance = 1, DiTAttention? attention = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        Guard.Rank(xStart, 4, nameof(xStart), "B, C, H, W");
        var times = Times(tStart, steps);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = xStart.alias();
        var nullLabels = torch.full_like(labels, model.NullLabel);
        for (int i = 0; i < steps; i++)
        {
            using var step = NewDisposeScope();
            var t = torch.full(new long[] { x.shape[0] }, times[i], dtype: x.dtype, device: x.device);
            var vc = model.Denoise(x, t, labels, attention);
            var vu = guidance == 1 ? null : model.Denoise(x, t, nullLabels, attention);
            x = (x + (times[i + 1] - times[i]) * Guide(vc, vu, guidance)).MoveToOuterDisposeScope();
        }
        return x.MoveToOuterDisposeScope();
    }
}
