namespace AttentionLab.Papers.VAttention;

/// <summary>
/// The shape of a model's KV cache as the allocator sees it: layers, KV heads, head dim and bytes per element.
/// vAttention reserves one virtual buffer per layer and per tensor (K and V), so the unit of mapping is one
/// (layer, tensor) row of one token: <see cref="BytesPerTokenPerTensor"/> = H_kv · D · bytes.
/// </summary>
/// <remarks>
/// bytes/token (all layers, K and V) = 2 · L · H_kv · D · bytes. Llama-3-8B: 2 · 32 · 8 · 128 · 2 B = 131,072 B = 128 KiB.
/// </remarks>
public sealed record KvGeometry(int Layers, int KvHeads, int HeadDim, int DtypeBytes)
{
    /// <summary>Llama-3-8B: 32 layers, 8 KV heads (grouped-query), head dim 128, fp16.</summary>
    public static KvGeometry Llama3_8B => new(32, 8, 128, 2);

    /// <summary>Bytes of one token in one layer's K (or V) buffer: H_kv · D · bytes.</summary>
    public long BytesPerTokenPerTensor => (long)KvHeads * HeadDim * DtypeBytes;

    /// <summary>Bytes of one token over every layer, K and V: 2 · L · H_kv · D · bytes.</summary>
    public long BytesPerToken => 2L * Layers * BytesPerTokenPerTensor;

    /// <summary>Buffers vAttention maps pages into: one per layer for K and one for V, 2 · L.</summary>
    public int Tensors => 2 * Layers;

    /// <summary>Throws an ArgumentException naming the first non-positive field.</summary>
    public KvGeometry Validate()
    {
        if (Layers <= 0) throw new ArgumentException($"Layers must be positive, got {Layers}.", nameof(Layers));
        if (KvHeads <= 0) throw new ArgumentException($"KvHeads must be positive, got {KvHeads}.", nameof(KvHeads));
        if (HeadDim <= 0) throw new ArgumentException($"HeadDim must be positive, got {HeadDim}.", nameof(HeadDim));
        if (DtypeBytes <= 0) throw new ArgumentException($"DtypeBytes must be positive, got {DtypeBytes}.", nameof(DtypeBytes));
        return this;
    }
}

/// <summary>GPU memory the KV cache may use: the device's memory minus the model weights (and a reserve for activations).</summary>
public sealed record GpuBudget(long DeviceBytes, long WeightBytes, long ReserveBytes = 0)
{
    /// <summary>An 80 GB GPU (A100/H100-80GB, 80·10⁹ B) serving an 8B-parameter fp16 model (16·10⁹ B of weights).</summary>
    public static GpuBudget A100_80GB_8B => new(80_000_000_000, 16_000_000_000);

    /// <summary>Bytes left for keys and values: device − weights − reserve.</summary>
    public long KvBytes => DeviceBytes - WeightBytes - ReserveBytes;

    /// <summary>Throws an ArgumentException when the budget leaves no room for a KV cache.</summary>
    public GpuBudget Validate()
    {
        if (DeviceBytes <= 0) throw new ArgumentException($"DeviceBytes must be positive, got {DeviceBytes}.", nameof(DeviceBytes));
        if (WeightBytes < 0 || ReserveBytes < 0) throw new ArgumentException("WeightBytes and ReserveBytes must be ≥ 0.", nameof(WeightBytes));
        if (KvBytes <= 0)
            throw new ArgumentException(
                $"the budget leaves {KvBytes} B for the KV cache (device {DeviceBytes} − weights {WeightBytes} − reserve {ReserveBytes}).",
                nameof(DeviceBytes));
        return this;
    }
}

/// <summary>Page arithmetic of vAttention (§2 of the spec): tokens per page, pages per request, the fragmentation bound.</summary>
public static class PageMath
{
    /// <summary>2 MiB, the page size of stock CUDA VMM (cuMemCreate's granularity).</summary>
    public const long Page2MiB = 2L << 20;
    /// <summary>64, 128 and 256 KiB: the page sizes of the paper's modified UVM driver.</summary>
    public const long Page64KiB = 64L << 10, Page128KiB = 128L << 10, Page256KiB = 256L << 10;

    /// <summary>page_tokens = page_bytes / (H_kv · D · bytes). Example: 2 MiB / (8 · 128 · 2 B) = 1024 tokens.</summary>
    public static long PageTokens(KvGeometry geometry, long pageBytes)
    {
        CheckPage(geometry, pageBytes);
        return pageBytes / geometry.BytesPerTokenPerTensor;
    }

    /// <summary>Pages one request of <paramref name="tokens"/> tokens needs in each (layer, tensor): ⌈len · bytes_per_token_per_tensor / page⌉.</summary>
    public static long PagesPerTensor(KvGeometry geometry, long pageBytes, long tokens)
    {
        CheckPage(geometry, pageBytes);
        if (tokens < 0) throw new ArgumentException($"tokens must be ≥ 0, got {tokens}.", nameof(tokens));
        return CeilDiv(tokens * geometry.BytesPerTokenPerTensor, pageBytes);
    }

    /// <summary>Physical bytes one request holds: 2 · L · pages_per_tensor · page_bytes.</summary>
    public static long RequestBytes(KvGeometry geometry, long pageBytes, long tokens) =>
        geometry.Tensors * PagesPerTensor(geometry, pageBytes, tokens) * pageBytes;

    /// <summary>
    /// The most one request can waste to internal fragmentation, in bytes: (page_tokens − 1) tokens in each of the
    /// 2 · L buffers, i.e. 2 · L · (page_tokens − 1) · H_kv · D · bytes.
    /// </summary>
    public static long FragmentationBoundBytes(KvGeometry geometry, long pageBytes) =>
        geometry.Tensors * (PageTokens(geometry, pageBytes) - 1) * geometry.BytesPerTokenPerTensor;

    /// <summary>⌈a / b⌉ for a ≥ 0, b &gt; 0.</summary>
    public static long CeilDiv(long a, long b) => (a + b - 1) / b;

    static void CheckPage(KvGeometry geometry, long pageBytes)
    {
        ArgumentNullException.ThrowIfNull(geometry);
        geometry.Validate();
        long unit = geometry.BytesPerTokenPerTensor;
        if (pageBytes <= 0 || pageBytes % unit != 0)
            throw new ArgumentException(
                $"pageBytes must be a positive multiple of one token's row H_kv·D·bytes = {unit} B, got {pageBytes}.", nameof(pageBytes));
    }
}
