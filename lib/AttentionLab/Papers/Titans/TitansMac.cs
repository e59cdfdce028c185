using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Titans;

/// <summary>
/// Titans MAC (memory as context, paper §4.1): the sequence in segments of C tokens; each segment's attention sees the
/// persistent tokens, the memory's read for the segment and the segment itself; the memory is then written with the attention
/// output, and the output is gated by the memory's read of it. x [B, T, d] → [B, T, d].
/// </summary>
/// <remarks>
/// For segment S⁽ᵗ⁾ = x_{tC … tC+C−1} (the last one may be shorter), with M_{t−1} the memory after the earlier segments:
///   h⁽ᵗ⁾ = W_O^M M*_{t−1}(q⁽ᵗ⁾),  q⁽ᵗ⁾ = ℓ2(conv(SiLU(S⁽ᵗ⁾ W_Q^M)))      retrieval without update, per token (paper eq. 21)
///   S̃⁽ᵗ⁾ = [P ‖ h⁽ᵗ⁾ ‖ S⁽ᵗ⁾]                                               (eq. 22)
///   y⁽ᵗ⁾ = Attn*(S̃⁽ᵗ⁾)  queries at the segment's tokens only; token i sees P, h_j and x_j for j ≤ i   (eq. 23)
///   M_t = M_{t−1} written with y⁽ᵗ⁾ (k, v, θ, η, α from y; the memory's chunked or recurrent form)      (eq. 24)
///   o⁽ᵗ⁾ = y⁽ᵗ⁾ ⊗ W_O^M M*(y⁽ᵗ⁾),  ⊗ MAG's normalised gate (RMS(y) ⊙ g_y) ⊙ σ(RMS(m) ⊙ g_m)           (eq. 25)
/// Causality (spec §2 subtle point 1) fixes two readings the paper leaves open: attention is causal by position inside the
/// segment (h_j depends on x_j), and eq. 25's read M*_t(y_i) is the core's read-before-write M(q_i; W_{i−1}) over the segment's
/// writes — reading with the end-of-segment memory would leak the segment's later tokens. The memory's conv runs over the
/// stream of x for the reads and over the stream of y for the writes, each carried across segments.
/// Both branches share the memory's parameters (W_Q^M, W_K^M, W_V^M, W_O^M, conv, gates) and the attention's (W_QKV, W_O, P).
/// </remarks>
public sealed class TitansMac : TitansVariant
{
    readonly PersistentWindowAttention attn;
    readonly TitansMemory memory;
    readonly Parameter g_attn, g_memory;

    /// <param name="dModel">d.</param>
    /// <param name="heads">H; must divide d.</param>
    /// <param name="segment">C: tokens per segment (the attention's span).</param>
    /// <param name="persistentTokens">N_p ≥ 0.</param>
    /// <param name="options">memory settings; null: <c>new TitansMemoryOptions()</c>.</param>
    public TitansMac(int dModel, int heads, int segment, int persistentTokens, TitansMemoryOptions? options = null) : base(nameof(TitansMac))
    {
        if (segment < 1) throw new ArgumentException($"segment must be ≥ 1, got {segment}.", nameof(segment));
        attn = new PersistentWindowAttention(dModel, heads, segment, persistentTokens);        // window C: the whole segment so far
        memory = new TitansMemory(dModel, heads, options);
        g_attn = nn.Parameter(torch.ones(dModel));
        g_memory = nn.Parameter(torch.ones(dModel));
        Segment = segment;
        RegisterComponents();
    }

    /// <summary>C.</summary>
    public int Segment { get; }
    public override PersistentWindowAttention Attention => attn;
    public override TitansMemory Memory => memory;

    /// <summary>
    /// State bytes of one sequence (float32): keys and values of P and of the segment so far (h and x: 2C tokens), the memory,
    /// the segment-start memory the reads use, and the conv of the read queries.
    /// </summary>
    public override long StateBytes(long batch = 1) =>
        batch * 2L * (2L * Segment + attn.PersistentTokens) * attn.DModel * sizeof(float) + memory.StateBytes(batch)
        + batch * (memory.Heads * AssociativeMemory.StateBytesPerHead(memory.Options.Architecture, memory.KeyDim, memory.ValueDim, memory.HiddenDim,
            memory.Options.Momentum) + (memory.Convs?.Q.StateBytes() ?? 0));

    public override Tensor forward(Tensor x) =>
        Forward(x, memory.Options.Form == TitansMemoryForm.Chunked ? AssociativeMemory.Chunked : AssociativeMemory.Recurrent,
            (state, q) => AssociativeMemory.Read(state, q, memory.Options.Core));

    /// <summary>
    /// The forward pass with the memory's writes run by <paramref name="write"/> and its reads by <paramref name="read"/> (state,
    /// q [B, L, H, Dk] → [B, L, H, Dv]); the naive twin passes its own.
    /// </summary>
    internal Tensor Forward(Tensor x, TitansMemory.MemoryRunner write, Func<MemoryState, Tensor, Tensor> read)
    {
        using var scope = NewDisposeScope();
        var (qRaw, _, _) = memory.Project(x);                                           // checks x: [B, T, d]
        long b = x.size(0), t = x.size(1);
        var queries = memory.ReadQueries(qRaw);                                         // q = ℓ2(conv(SiLU(x W_Q^M))) over the whole x stream
        int past = memory.Options.ConvKernel > 0 ? memory.Options.ConvKernel - 1 : 0;
        var state = memory.StartState(b);                                              // M_0 = W_0
        (Tensor Q, Tensor K, Tensor V)? tail = null;                                    // the y stream's last k − 1 projections
        var outputs = new List<Tensor>();
        for (long s = 0; s < t; s += Segment)
        {
            long len = Math.Min(Segment, t - s);
            var h = Heads(read(state, queries.narrow(1, s, len)));                      // h = M*_{t−1}(q⁽ᵗ⁾)
            var y = Attend(h, x.narrow(1, s, len));                                     // y = Attn*([P ‖ h ‖ S])
            var (qy, ky, vy) = memory.Project(y);
            int carried = 0;
            if (tail is { } p)                                                          // continue the conv from the previous segment
            {
                carried = (int)p.Q.size(1);
                (qy, ky, vy) = (torch.cat(new[] { p.Q, qy }, 1), torch.cat(new[] { p.K, ky }, 1), torch.cat(new[] { p.V, vy }, 1));
            }
            var r = memory.Memory(qy, ky, vy, y, write, state, carried);               // M_t: write y, read M(q_i; W_{i−1})
            outputs.Add(NormalisedGate(y, Heads(r.Output), g_attn, g_memory));          // o = y ⊗ M*(y)
            state = r.FinalState;
            if (past > 0)
            {
                long keep = Math.Min(past, qy.size(1));
                tail = (qy.narrow(1, qy.size(1) - keep, keep), ky.narrow(1, ky.size(1) - keep, keep), vy.narrow(1, vy.size(1) - keep, keep));
            }
        }
        return torch.cat(outputs, 1).MoveToOuterDisposeScope();
    }

    /// <summary>concat_h(z) W_O^M: a memory read [B, L, H, Dv] back to the model width [B, L, d].</summary>
    Tensor Heads(Tensor z) => memory.Proj.call(z.reshape(z.size(0), z.size(1), -1));

    /// <summary>y [B, L, d]: the segment's queries over the keys of P, h and the segment, causal by in-segment position.</summary>
    Tensor Attend(Tensor h, Tensor xs)
    {
        long len = xs.size(1);
        var (q, kx, vx) = attn.Project(xs);
        var (_, kh, vh) = attn.Project(h);
        var pos = torch.arange(len, device: xs.device);
        var keys = torch.cat(new[] { kh, kx }, 1);
        var values = torch.cat(new[] { vh, vx }, 1);
        var kPos = torch.cat(new[] { pos, pos });                                       // h_j and x_j both at position j
        if (attn.PersistentKeys(xs.size(0)) is { } p)
        {
            keys = torch.cat(new[] { p.K, keys }, 1);
            values = torch.cat(new[] { p.V, values }, 1);
            kPos = torch.cat(new[] { torch.arange(-attn.PersistentTokens, 0, 1, device: xs.device), kPos });   // P at −N_p … −1
        }
        var z = attn.Attend(q, keys, values, pos, kPos).Z;                              // window C: every j ≤ i of the segment
        return attn.Proj.call(z.reshape(z.size(0), len, -1));
    }

    public override MixerState NewState(long batch, ScalarType dtype, Device device)
    {
        Guard.Positive(batch, nameof(batch));
        ArgumentNullException.ThrowIfNull(device);
        var conv = memory.Convs is { } c ? (ConvState)c.Q.NewState(batch, dtype, device) : null;
        return new MacState(this, (TitansMemoryState)memory.NewState(batch, dtype, device), conv);
    }

    protected override Tensor StepState(Tensor xT, TitansVariantState state)
    {
        var s = (MacState)state;
        long b = xT.size(0), i = s.Position % Segment;                                 // position inside the segment
        if (i == 0) s.StartSegment(s.Memory.Stream?.State.DetachedCopy() ?? memory.StartState(b, xT.dtype).DetachedCopy());
        var x = xT.unsqueeze(1);                                                        // [B, 1, d]
        var (qRaw, _, _) = memory.Project(x);
        var h = Heads(AssociativeMemory.Read(s.SegmentStart!, memory.ReadQuery(qRaw, s.ReadConv), memory.Options.Core));   // h_i = M*_{t−1}(q_i)
        var (q, kx, vx) = attn.Project(x);
        var (_, kh, vh) = attn.Project(h);
        s.Append(torch.cat(new[] { kh, kx }, 1), torch.cat(new[] { vh, vx }, 1));
        var (keys, values) = (s.Keys!, s.Values!);
        if (attn.PersistentKeys(b) is { } p)
        {
            keys = torch.cat(new[] { p.K.to(q.dtype), keys }, 1);
            values = torch.cat(new[] { p.V.to(q.dtype), values }, 1);
        }
        var qPos = torch.full(1, i, dtype: ScalarType.Int64, device: x.device);
        var kPos = torch.zeros(keys.size(1), dtype: ScalarType.Int64, device: x.device);   // every cached key is visible (cachedKeys)
        var z = attn.Attend(q, keys, values, qPos, kPos, cachedKeys: true).Z;
        var y = attn.Proj.call(z.reshape(b, -1));                                       // y_i [B, d]
        var m = memory.Step(y, s.Memory);                                               // M(q_i; W_{i−1}), then write y_i
        return NormalisedGate(y, m, g_attn, g_memory);
    }
}

/// <summary>
/// The decode state of <see cref="TitansMac"/>: the memory (its y-stream conv and <see cref="AssociativeMemoryStream"/>), the memory
/// at the start of the current segment (what the reads use), the conv of the read queries, and the keys and values of h and x
/// for the segment so far (cleared at every segment start).
/// </summary>
public sealed class MacState : TitansVariantState
{
    internal MacState(TitansMac owner, TitansMemoryState memory, ConvState? readConv) : base(owner) => (Memory, ReadConv) = (memory, readConv);

    /// <summary>The memory written with y (conv states and stream).</summary>
    public TitansMemoryState Memory { get; }
    /// <summary>The conv state of the read queries (x stream); null without conv.</summary>
    internal ConvState? ReadConv { get; }
    /// <summary>M_{t−1}: the memory at the start of the current segment (detached).</summary>
    public MemoryState? SegmentStart { get; private set; }
    /// <summary>Keys [B, 2i, H, Dk] of h_0, x_0 … h_{i−1}, x_{i−1} of the current segment (null at its start).</summary>
    public Tensor? Keys { get; private set; }
    /// <summary>Values, as <see cref="Keys"/>.</summary>
    public Tensor? Values { get; private set; }

    public override long Bytes => Memory.Bytes + (ReadConv?.Bytes ?? 0) + (SegmentStart?.Bytes ?? 0) + Size(Keys) + Size(Values);

    static long Size(Tensor? t) => t is null ? 0 : t.NumberOfElements * t.ElementSize;

    internal void StartSegment(MemoryState start)
    {
        SegmentStart?.Dispose();
        SegmentStart = start.DetachFromDisposeScope();
        Keys?.Dispose(); Values?.Dispose();
        Keys = Values = null;
    }

    internal void Append(Tensor k, Tensor v)
    {
        var (nk, nv) = Keys is null ? (k.detach().clone(), v.detach().clone())
            : (torch.cat(new[] { Keys, k.detach() }, 1), torch.cat(new[] { Values!, v.detach() }, 1));
        Keys?.Dispose(); Values?.Dispose();
        (Keys, Values) = (nk.DetachFromDisposeScope(), nv.DetachFromDisposeScope());
    }

    public override void Dispose()
    {
        Memory.Dispose(); ReadConv?.Dispose(); SegmentStart?.Dispose(); Keys?.Dispose(); Values?.Dispose();
    }
}
