using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.FreeSwim;

/// <summary>Self-attention restricted to a window (gather form) at a given scale; cross-attention as computed.</summary>
public sealed class WindowedDiTAttention : DiTAttention
{
    readonly double? scale;

    /// <param name="window">the window on the model's token grid.</param>
    /// <param name="scale">score scale; null = 1/√d_head.</param>
    public WindowedDiTAttention(WindowIndex window, double? scale = null)
    {
        Window = window ?? throw new ArgumentNullException(nameof(window));
        this.scale = scale;
    }

    public WindowIndex Window { get; }
    public override double? Scale => scale;

    public override Tensor SelfAttention(int layer, Tensor q, Tensor k, Tensor v, TokenGrid grid)
    {
        CheckGrid(Window, grid);
        return WindowAttention.Forward(q, k, v, Window, scale);
    }

    internal static void CheckGrid(WindowIndex window, TokenGrid grid)
    {
        if (window.Grid != grid)
            throw new ArgumentException(
                $"the window is for grid {window.Grid.Frames}×{window.Grid.Height}×{window.Grid.Width}, " +
                $"the model runs {grid.Frames}×{grid.Height}×{grid.Width}.", nameof(window));
    }
}

/// <summary>Full self-attention at a chosen scale (e.g. FreeSwim's <see cref="EntropyScale"/>).</summary>
public sealed class ScaledFullAttention : DiTAttention
{
    readonly double? scale;
    public ScaledFullAttention(double? scale) => this.scale = scale;
    public override double? Scale => scale;
}

/// <summary>
/// The full branch's cross-attention output per layer, [B, N, d] after the output projection, kept from the last
/// guide step (official: <c>cached_cross_output</c>, taken before <c>to_out</c> — the same thing, since to_out is a
/// fixed linear map). Owns its tensors.
/// </summary>
public sealed class CrossAttnCache : IDisposable
{
    readonly Dictionary<int, Tensor> layers = new();

    /// <summary>Layers held.</summary>
    public int Count => layers.Count;

    /// <summary>The cached output of <paramref name="layer"/>, or null.</summary>
    public Tensor? Get(int layer) => layers.TryGetValue(layer, out var t) ? t : null;

    /// <summary>Stores a detached copy of <paramref name="output"/> for <paramref name="layer"/> (replacing and disposing the old one).</summary>
    public void Set(int layer, Tensor output)
    {
        Guard.NotNull(output, nameof(output));
        var copy = output.detach().clone();
        copy.DetachFromDisposeScope();                                          // owned by the cache, not by the caller's scope
        if (layers.TryGetValue(layer, out var old)) old.Dispose();
        layers[layer] = copy;
    }

    /// <summary>Drops every layer.</summary>
    public void Clear()
    {
        foreach (var t in layers.Values) t.Dispose();
        layers.Clear();
    }

    public void Dispose() => Clear();
}

/// <summary>Which branch's latent the dual path keeps after each step.</summary>
public enum DualBranch
{
    /// <summary>The window branch (FreeSwim).</summary>
    Window,
    /// <summary>The full branch (a test configuration: with the override off it is plain full-attention sampling).</summary>
    Full,
}

/// <summary>
/// FreeSwim's dual-path sampler (official <c>pipeline_wan_video2video.py</c> + <c>WanFlexAttnProcessor_</c> /
/// <c>WanCrossAttnProcessor</c>) over a <see cref="TinyDiT"/>, with Euler flow-matching steps and classifier-free guidance.
/// </summary>
/// <remarks>
/// The conditional batch is [window branch, full branch], both holding the same latent x.
/// <list type="bullet">
/// <item>Guide step (step i with i mod cacheSteps = 0, or every step when the cache is off): the window branch runs the
/// inward window self-attention, the full branch full self-attention (both at the FreeSwim scale); each layer's
/// cross-attention output of the full branch, c_ℓ, replaces the cross-attention output of <i>both</i> branches
/// (the override) and is cached.</item>
/// <item>Other steps: the cached c_ℓ is the cross-attention output (not recomputed) and the full branch's
/// self-attention falls back to the window output. Both branches then hold the same latent, run the same attention
/// and add the same c_ℓ, so the full branch is a bitwise copy of the window branch: this sampler runs the window
/// branch alone on those steps (same result, half the cost).</item>
/// <item>The unconditional pass runs the window branch only, with its own (null-label) cross-attention.</item>
/// <item>v = v_∅ + g (v_window − v_∅); x ← x + (t_{i+1} − t_i) v; only the window branch's latent is kept and
/// duplicated for the next step.</item>
/// </list>
/// With the override off the full branch never reaches the window branch: the sample is window-only sampling.
/// </remarks>
public sealed class DualPathSampler
{
    /// <param name="model">the denoiser.</param>
    /// <param name="cacheSteps">a guide step every <paramref name="cacheSteps"/> steps (official <c>cache_steps</c>).</param>
    /// <param name="overrideCrossAttn">replace the window branch's cross-attention output by the full branch's.</param>
    /// <param name="useCache">false: every step is a guide step (nothing reused).</param>
    /// <param name="keep">the branch whose latent is kept (FreeSwim: the window branch).</param>
    public DualPathSampler(TinyDiT model, int cacheSteps, bool overrideCrossAttn = true, bool useCache = true, DualBranch keep = DualBranch.Window)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Guard.Positive(cacheSteps, nameof(cacheSteps));
        CacheSteps = cacheSteps; OverrideCrossAttn = overrideCrossAttn; UseCache = useCache; Keep = keep;
    }

    public TinyDiT Model { get; }
    public int CacheSteps { get; }
    public bool OverrideCrossAttn { get; }
    public bool UseCache { get; }
    public DualBranch Keep { get; }

    /// <summary>Guide steps (full-branch passes) of the last <see cref="Sample"/>.</summary>
    public int GuideSteps { get; private set; }

    /// <summary>True when step <paramref name="step"/> runs the full branch.</summary>
    public bool IsGuideStep(int step) => !UseCache || step % CacheSteps == 0;

    /// <summary>
    /// Samples from x_start [B, C, H, W] at tStart down to 0 in <paramref name="steps"/> Euler steps, labels [B].
    /// <paramref name="window"/> is the window on the model's token grid at this resolution; <paramref name="scale"/>
    /// the self-attention scale of both branches (FreeSwim: <see cref="EntropyScale.Factor"/>; null = 1/√d_head).
    /// </summary>
    public Tensor Sample(Tensor xStart, Tensor labels, double tStart, int steps, double guidance, WindowIndex window, double? scale)
    {
        Guard.Rank(xStart, 4, nameof(xStart), "B, C, H, W");
        ArgumentNullException.ThrowIfNull(window);
        var times = FlowSampler.Times(tStart, steps);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var cache = new CrossAttnCache();
        var windowOnly = new WindowedDiTAttention(window, scale);
        var x = xStart.alias();
        long b = x.shape[0];
        var nullLabels = torch.full_like(labels, Model.NullLabel);
        GuideSteps = 0;
        for (int i = 0; i < steps; i++)
        {
            using var step = NewDisposeScope();
            var t = torch.full(new long[] { b }, times[i], dtype: x.dtype, device: x.device);
            Tensor vc;
            if (IsGuideStep(i))
            {
                GuideSteps++;
                var both = new GuideAttention(window, scale, b, OverrideCrossAttn ? cache : null);
                var v2 = Model.Denoise(torch.cat(new[] { x, x }), torch.cat(new[] { t, t }), torch.cat(new[] { labels, labels }), both);
                vc = Keep == DualBranch.Window ? v2.narrow(0, 0, b) : v2.narrow(0, b, b);
            }
            else
            {
                DiTAttention reuse = OverrideCrossAttn ? new ReuseAttention(window, scale, cache) : windowOnly;
                vc = Model.Denoise(x, t, labels, reuse);
            }
            var vu = guidance == 1 ? null : Model.Denoise(x, t, nullLabels, windowOnly);   // CFG: window branch only
            x = (x + (times[i + 1] - times[i]) * FlowSampler.Guide(vc, vu, guidance)).MoveToOuterDisposeScope();
        }
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>Guide step: rows [0, B) window, [B, 2B) full; the full rows' cross-attention output overrides both and is cached.</summary>
    sealed class GuideAttention : DiTAttention
    {
        readonly WindowIndex window; readonly double? scale; readonly long b; readonly CrossAttnCache? cache;
        public GuideAttention(WindowIndex window, double? scale, long b, CrossAttnCache? cache)
        {
            this.window = window; this.scale = scale; this.b = b; this.cache = cache;
        }
        public override double? Scale => scale;

        public override Tensor SelfAttention(int layer, Tensor q, Tensor k, Tensor v, TokenGrid grid)
        {
            WindowedDiTAttention.CheckGrid(window, grid);
            using var scope = NewDisposeScope();
            var local = WindowAttention.Forward(q.narrow(0, 0, b), k.narrow(0, 0, b), v.narrow(0, 0, b), window, scale);   // window branch
            var global = TinyDiT.FullAttention(q.narrow(0, b, b), k.narrow(0, b, b), v.narrow(0, b, b), scale);           // full branch
            return torch.cat(new[] { local, global }).MoveToOuterDisposeScope();
        }

        public override Tensor CrossAttentionOutput(int layer, Tensor output)
        {
            if (cache is null) return output;                                   // override off: each branch keeps its own
            using var scope = NewDisposeScope();
            var full = output.narrow(0, b, b);
            cache.Set(layer, full);                                             // cache c_ℓ
            return torch.cat(new[] { full, full }).MoveToOuterDisposeScope();   // override: both branches add c_ℓ
        }
    }

    /// <summary>Non-guide step: window self-attention, cached cross-attention output.</summary>
    sealed class ReuseAttention : DiTAttention
    {
        readonly WindowIndex window; readonly double? scale; readonly CrossAttnCache cache;
        public ReuseAttention(WindowIndex window, double? scale, CrossAttnCache cache) { this.window = window; this.scale = scale; this.cache = cache; }
        public override double? Scale => scale;

        public override Tensor SelfAttention(int layer, Tensor q, Tensor k, Tensor v, TokenGrid grid)
        {
            WindowedDiTAttention.CheckGrid(window, grid);
            return WindowAttention.Forward(q, k, v, window, scale);
        }

        public override Tensor? CrossAttentionReplacement(int layer) =>
            cache.Get(layer) ?? throw new InvalidOperationException(
                $"no cached cross-attention output for layer {layer}: the first step must be a guide step.");
    }
}
