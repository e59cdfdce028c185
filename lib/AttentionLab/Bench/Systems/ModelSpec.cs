namespace AttentionLab.Bench.Systems;

/// <summary>
/// A decoder-only Transformer as a serving cost model sees it: depth, widths, parameter count, bytes per value.
/// </summary>
/// <remarks>
/// Per generated token (one request, context n):
/// weights W = P·b bytes;  linear FLOPs = 2·P;  KV cache per token = 2·L·d_kv·b;
/// attention reads n·2·L·d_kv·b bytes and does 4·L·n·d FLOPs (q·kᵀ and p·v, each 2·n·d per layer).
/// </remarks>
/// <param name="Name">label.</param>
/// <param name="Layers">L.</param>
/// <param name="DModel">d: width of q and of the attention output o (query heads × head dim).</param>
/// <param name="DKv">d_kv: width of k (and of v) = KV heads × head dim (d_kv &lt; d under grouped-query attention).</param>
/// <param name="Params">P: parameters of the linear layers (embeddings may be counted; decode reads them all once per step).</param>
/// <param name="BytesPerValue">b: 2 for bf16/fp16.</param>
public sealed record ModelSpec(string Name, int Layers, int DModel, int DKv, double Params, int BytesPerValue = 2)
{
    /// <summary>W = P·b.</summary>
    public double WeightBytes => Params * BytesPerValue;
    /// <summary>2·L·d_kv·b: the K and V entries one token adds to the cache over all layers.</summary>
    public double KvBytesPerToken => 2.0 * Layers * DKv * BytesPerValue;
    /// <summary>2·P: one multiply-add per weight for one token.</summary>
    public double LinearFlopsPerToken => 2.0 * Params;
    /// <summary>4·L·n·d: q·kᵀ (2·n·d) and p·v (2·n·d) per layer for one query token over n cached tokens.</summary>
    public double AttentionFlopsPerToken(double context) => 4.0 * Layers * context * DModel;
    /// <summary>n·2·L·d_kv·b: the cache bytes one query token reads.</summary>
    public double KvBytesReadPerToken(double context) => context * KvBytesPerToken;

    /// <summary>Llama-2-70B-like geometry: 80 layers, d = 8192, 8 KV heads × 128 = 1024, 70·10⁹ parameters, bf16.</summary>
    public static ModelSpec Llama70B => new("Llama-2-70B", 80, 8192, 1024, 70e9);
    /// <summary>Llama-3-8B-like geometry: 32 layers, d = 4096, 8 KV heads × 128 = 1024, 8·10⁹ parameters, bf16 (128 KiB of KV per token).</summary>
    public static ModelSpec Llama8B => new("Llama-3-8B", 32, 4096, 1024, 8e9);

    /// <summary>Throws an ArgumentException naming the field when a size is not positive.</summary>
    public ModelSpec Validated(string argumentName = "model")
    {
        if (string.IsNullOrWhiteSpace(Name)) throw new ArgumentException($"{argumentName}.Name must not be empty.", argumentName);
        if (Layers <= 0) throw new ArgumentException($"{argumentName}.{nameof(Layers)} must be positive, got {Layers}.", argumentName);
        if (DModel <= 0) throw new ArgumentException($"{argumentName}.{nameof(DModel)} must be positive, got {DModel}.", argumentName);
        if (DKv <= 0) throw new ArgumentException($"{argumentName}.{nameof(DKv)} must be positive, got {DKv}.", argumentName);
        if (!(Params > 0) || double.IsInfinity(Params)) throw new ArgumentException(
            $"{argumentName}.{nameof(Params)} must be a finite positive number, got {Params}.", argumentName);
        if (BytesPerValue <= 0) throw new ArgumentException($"{argumentName}.{nameof(BytesPerValue)} must be positive, got {BytesPerValue}.", argumentName);
        return this;
    }
}
