using AttentionLab.Bench.Systems;

namespace AttentionLab.Papers.AttentionOffloading;

/// <summary>
/// One serving setup. Homogeneous: <see cref="ModelDevices"/> copies of <see cref="ModelDevice"/> hold the weights, the KV
/// cache and run attention. Heterogeneous (Lamina): the model devices hold only the weights and run the linear layers;
/// <see cref="AttentionDevices"/> memory-optimised devices hold the KV cache and run attention, linked by a network.
/// </summary>
/// <param name="Name">label.</param>
/// <param name="ModelDevice">the compute device (weights, QKV/O projections, MLP).</param>
/// <param name="ModelDevices">how many (weights are sharded over them; their bandwidth and FLOPs add up).</param>
/// <param name="AttentionDevice">the memory device, or null for a homogeneous setup.</param>
/// <param name="AttentionDevices">how many memory devices (0 when homogeneous); requests/heads are split over them.</param>
/// <param name="NetworkGBs">link bandwidth per attention device, 10⁹ B/s, counted for both directions together.</param>
/// <param name="NetworkLatencyUs">one round trip, µs: every decode step of the offloaded setup pays L of them (one per layer),
/// pipelined or not.</param>
/// <param name="UsableMemoryFraction">share of each device's memory available to weights + KV (the rest: activations, runtime).</param>
/// <param name="Overlap">the same assumption for both setups. true = mini-batches pipelined so every resource (each device's
/// compute and memory, the network) works at once and the step is the busiest resource's time (the paper's scheme,
/// [unverified] in detail); false = one stage after the other (step = sum). Compare two setups only under the same value.</param>
public sealed record ClusterConfig(string Name, DeviceSpec ModelDevice, int ModelDevices, DeviceSpec? AttentionDevice = null,
    int AttentionDevices = 0, double NetworkGBs = 0, double NetworkLatencyUs = 0, double UsableMemoryFraction = 0.9, bool Overlap = true)
{
    /// <summary>True when attention is offloaded to separate devices.</summary>
    public bool IsHeterogeneous => AttentionDevice is not null;

    /// <summary>Σ device prices, $ per hour.</summary>
    public double PricePerHour => ModelDevices * ModelDevice.PricePerHour + AttentionDevices * (AttentionDevice?.PricePerHour ?? 0);

    /// <summary>n_m × model device, e.g. "4×H100" or "2×H100 + 4×H20".</summary>
    public string Hardware =>
        IsHeterogeneous ? $"{ModelDevices}×{ModelDevice.Name} + {AttentionDevices}×{AttentionDevice!.Name}" : $"{ModelDevices}×{ModelDevice.Name}";

    /// <summary>Everything on <paramref name="count"/> copies of <paramref name="device"/>.</summary>
    public static ClusterConfig Homogeneous(DeviceSpec device, int count, double usableMemoryFraction = 0.9, bool overlap = true) =>
        new ClusterConfig($"homogeneous {count}×{device?.Name}", device!, count, UsableMemoryFraction: usableMemoryFraction, Overlap: overlap).Validated();

    /// <summary>Lamina: linear layers on <paramref name="modelCount"/> × <paramref name="modelDevice"/>, attention and KV cache
    /// on <paramref name="attentionCount"/> × <paramref name="attentionDevice"/>.</summary>
    public static ClusterConfig Heterogeneous(DeviceSpec modelDevice, int modelCount, DeviceSpec attentionDevice, int attentionCount,
        double networkGBs = 50, double networkLatencyUs = 10, double usableMemoryFraction = 0.9, bool overlap = true) =>
        new ClusterConfig($"offloaded {modelCount}×{modelDevice?.Name} + {attentionCount}×{attentionDevice?.Name}", modelDevice!, modelCount,
            attentionDevice, attentionCount, networkGBs, networkLatencyUs, usableMemoryFraction, overlap).Validated();

    /// <summary>A copy with a different number of attention devices (the name follows).</summary>
    public ClusterConfig WithAttentionDevices(int count)
    {
        if (!IsHeterogeneous) throw new ArgumentException("a homogeneous setup has no attention devices to change.", nameof(count));
        if (count <= 0) throw new ArgumentException($"count must be positive, got {count}.", nameof(count));
        return (this with { AttentionDevices = count, Name = $"offloaded {ModelDevices}×{ModelDevice.Name} + {count}×{AttentionDevice!.Name}" }).Validated();
    }

    /// <summary>Throws an ArgumentException naming <paramref name="argumentName"/> when the setup is inconsistent.</summary>
    public ClusterConfig Validated(string argumentName = "config")
    {
        if (ModelDevice is null) throw new ArgumentException($"{argumentName}.{nameof(ModelDevice)} must be given.", argumentName);
        ModelDevice.Validated(argumentName);
        if (ModelDevices <= 0) throw new ArgumentException($"{argumentName}.{nameof(ModelDevices)} must be positive, got {ModelDevices}.", argumentName);
        if (!(UsableMemoryFraction > 0 && UsableMemoryFraction <= 1))
            throw new ArgumentException($"{argumentName}.{nameof(UsableMemoryFraction)} must be in (0, 1], got {UsableMemoryFraction}.", argumentName);
        if (AttentionDevice is null)
        {
            if (AttentionDevices != 0)
                throw new ArgumentException($"{argumentName}: {AttentionDevices} attention devices but no AttentionDevice.", argumentName);
            return this;
        }
        AttentionDevice.Validated(argumentName);
        if (AttentionDevices <= 0)
            throw new ArgumentException(
                $"{argumentName}.{nameof(AttentionDevices)} must be positive when attention is offloaded, got {AttentionDevices}.", argumentName);
        if (!(NetworkGBs > 0) || double.IsInfinity(NetworkGBs))
            throw new ArgumentException($"{argumentName}.{nameof(NetworkGBs)} must be a finite positive number, got {NetworkGBs}.", argumentName);
        if (!(NetworkLatencyUs >= 0) || double.IsInfinity(NetworkLatencyUs))
            throw new ArgumentException($"{argumentName}.{nameof(NetworkLatencyUs)} must be a finite number ≥ 0, got {NetworkLatencyUs}.", argumentName);
        return this;
    }
}

/// <summary>A decode workload: <paramref name="Batch"/> requests, each with <paramref name="Context"/> tokens in its KV cache.</summary>
public sealed record Workload(int Batch, int Context)
{
    /// <summary>Throws an ArgumentException naming <paramref name="argumentName"/> when batch or context is not positive.</summary>
    public Workload Validated(string argumentName = "workload")
    {
        if (Batch <= 0) throw new ArgumentException($"{argumentName}.{nameof(Batch)} must be positive, got {Batch}.", argumentName);
        if (Context <= 0) throw new ArgumentException($"{argumentName}.{nameof(Context)} must be positive, got {Context}.", argumentName);
        return this;
    }
}
