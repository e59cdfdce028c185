namespace AttentionLab.Bench.Systems;

/// <summary>
/// An accelerator as an analytic cost model sees it: dense peak compute, memory bandwidth, memory capacity and a rental
/// price. Peak figures, not measurements; the price is a user input (the library's presets leave it to the caller).
/// Shared by the systems simulators (P27 serving cost model, P44 KV-memory simulator).
/// </summary>
/// <param name="Name">label in tables and charts.</param>
/// <param name="PeakTflops">dense peak in the serving dtype, 10¹² FLOP/s.</param>
/// <param name="MemBwGBs">memory bandwidth, 10⁹ B/s.</param>
/// <param name="MemGB">memory capacity, 10⁹ B.</param>
/// <param name="PricePerHour">$ per device-hour (≥ 0).</param>
public sealed record DeviceSpec(string Name, double PeakTflops, double MemBwGBs, double MemGB, double PricePerHour)
{
    /// <summary>FLOP/s.</summary>
    public double FlopsPerSecond => PeakTflops * 1e12;
    /// <summary>B/s.</summary>
    public double BytesPerSecond => MemBwGBs * 1e9;
    /// <summary>B.</summary>
    public double MemoryBytes => MemGB * 1e9;
    /// <summary>The roofline's ridge point, FLOP per byte: a kernel with lower arithmetic intensity is bandwidth-bound here.</summary>
    public double RidgeFlopsPerByte => FlopsPerSecond / BytesPerSecond;

    /// <summary>NVIDIA H100 SXM as the spec lists it: 989 TFLOPS dense bf16, 3.35 TB/s, 80 GB.</summary>
    public static DeviceSpec H100(double pricePerHour) => new DeviceSpec("H100", 989, 3350, 80, pricePerHour).Validated();
    /// <summary>NVIDIA H20 as the spec lists it: ≈ 148 TFLOPS dense bf16, 4.0 TB/s, 96 GB (memory-optimised).</summary>
    public static DeviceSpec H20(double pricePerHour) => new DeviceSpec("H20", 148, 4000, 96, pricePerHour).Validated();

    /// <summary>Throws an ArgumentException naming the field when a figure is not a positive number (price: ≥ 0).</summary>
    public DeviceSpec Validated(string argumentName = "device")
    {
        if (string.IsNullOrWhiteSpace(Name)) throw new ArgumentException($"{argumentName}.Name must not be empty.", argumentName);
        Check(PeakTflops, nameof(PeakTflops)); Check(MemBwGBs, nameof(MemBwGBs)); Check(MemGB, nameof(MemGB));
        if (!(PricePerHour >= 0) || double.IsInfinity(PricePerHour))
            throw new ArgumentException($"{argumentName}.{nameof(PricePerHour)} must be a finite number ≥ 0, got {PricePerHour} ({Name}).", argumentName);
        return this;

        void Check(double value, string field)
        {
            if (!(value > 0) || double.IsInfinity(value))
                throw new ArgumentException($"{argumentName}.{field} must be a finite positive number, got {value} ({Name}).", argumentName);
        }
    }
}
