using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Data;

/// <summary>
/// Seeded synthetic series: a carrier sinusoid (amplitude 1) plus 0–2 weaker ones (amplitude 0.2–0.5), random
/// frequency (log-uniform in [MinFrequency, MaxFrequency] cycles per step) and phase, plus Gaussian noise.
/// Tasks: forecast the next <see cref="Horizon"/> values at every position; classify the carrier's frequency bucket
/// (<see cref="Buckets"/> log-spaced buckets). The same seed gives the same data.
/// </summary>
public sealed record SinusoidTask(int Length = 64, int Horizon = 8, int MaxComponents = 3, double MinFrequency = 1.0 / 32,
    double MaxFrequency = 1.0 / 4, int Buckets = 4, double Noise = 0.05)
{
    /// <summary><paramref name="count"/> series drawn from <c>new Random(seed)</c>.</summary>
    public TimeSeriesBatch Generate(int count, int seed, Device? device = null)
    {
        Validate();
        Guard.Positive(count, nameof(count));
        var rng = new Random(seed);
        int total = Length + Horizon;
        var series = new float[count * total];
        var labels = new long[count];
        double logMin = Math.Log(MinFrequency), logMax = Math.Log(MaxFrequency);
        for (int n = 0; n < count; n++)
        {
            int components = 1 + rng.Next(MaxComponents);
            var (freq, amp, phase) = (new double[components], new double[components], new double[components]);
            for (int c = 0; c < components; c++)
            {
                double u = rng.NextDouble();
                freq[c] = Math.Exp(logMin + u * (logMax - logMin));                  // log-uniform frequency
                amp[c] = c == 0 ? 1.0 : 0.2 + 0.3 * rng.NextDouble();                // carrier first
                phase[c] = 2 * Math.PI * rng.NextDouble();
                if (c == 0) labels[n] = Math.Min(Buckets - 1, (int)(u * Buckets));   // carrier's log-frequency bucket
            }
            for (int t = 0; t < total; t++)
            {
                double x = 0;
                for (int c = 0; c < components; c++) x += amp[c] * Math.Sin(2 * Math.PI * freq[c] * t + phase[c]);
                series[n * total + t] = (float)(x + Noise * Gaussian(rng));
            }
        }
        using var scope = NewDisposeScope();
        var all = torch.tensor(series, new long[] { count, total }, device: device);
        var inputs = all.narrow(1, 0, Length).unsqueeze(-1);                                   // x_0 … x_{N−1}
        var targets = all.unfold(1, Horizon, 1).narrow(1, 1, Length);                          // [n, N, H]: x_{t+1} … x_{t+H}
        return new TimeSeriesBatch(inputs.contiguous(), targets.contiguous(), torch.tensor(labels, device: device), all).DetachAll();
    }

    void Validate()
    {
        Guard.Positive(Length, nameof(Length)); Guard.Positive(Horizon, nameof(Horizon));
        Guard.Positive(MaxComponents, nameof(MaxComponents)); Guard.Positive(Buckets, nameof(Buckets));
        if (!(MinFrequency > 0 && MaxFrequency > MinFrequency))
            throw new ArgumentException($"need 0 < MinFrequency < MaxFrequency, got {MinFrequency}, {MaxFrequency}.", nameof(MinFrequency));
        if (Noise < 0) throw new ArgumentException($"Noise must be ≥ 0, got {Noise}.", nameof(Noise));
    }

    static double Gaussian(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
}

/// <summary>
/// Series for one split: Inputs [n, N, 1] (or [n, N, lags] after <see cref="WithLags"/>), Targets [n, N, H] (the next H values after each position), Labels [n]
/// (frequency bucket, int64) and the raw Series [n, N + H]. Owns its tensors.
/// </summary>
public sealed class TimeSeriesBatch : IDisposable
{
    public TimeSeriesBatch(Tensor inputs, Tensor targets, Tensor labels, Tensor series)
    {
        Inputs = inputs; Targets = targets; Labels = labels; Series = series;
    }

    public Tensor Inputs { get; }
    public Tensor Targets { get; }
    public Tensor Labels { get; }
    public Tensor Series { get; }
    public long Count => Inputs.shape[0];

    /// <summary>Rows <paramref name="index"/> (int64 [b]) of inputs, targets and labels, in the caller's scope.</summary>
    public (Tensor Inputs, Tensor Targets, Tensor Labels) Rows(Tensor index) =>
        (Inputs.index_select(0, index), Targets.index_select(0, index), Labels.index_select(0, index));

    /// <summary>
    /// The same series with <paramref name="lags"/> input features per position: x_t, x_{t−1}, …, x_{t−lags+1}
    /// (zeros before the start) — a causal kernel-size-<paramref name="lags"/> input window. Disposes this batch.
    /// </summary>
    public TimeSeriesBatch WithLags(int lags)
    {
        Guard.Positive(lags, nameof(lags));
        if (lags == 1) return this;
        using var scope = NewDisposeScope();
        var x = nn.functional.pad(Inputs.squeeze(-1), new long[] { lags - 1, 0 });          // [n, N + lags − 1]
        var windows = x.unfold(1, lags, 1).flip(-1).contiguous();                           // [n, N, lags]: x_t first
        var result = new TimeSeriesBatch(windows, Targets.alias(), Labels.alias(), Series.alias()).DetachAll();
        Dispose();
        return result;
    }

    internal TimeSeriesBatch DetachAll()
    {
        foreach (var t in new[] { Inputs, Targets, Labels, Series }) t.DetachFromDisposeScope();
        return this;
    }

    public void Dispose()
    {
        Inputs.Dispose(); Targets.Dispose(); Labels.Dispose(); Series.Dispose();
    }
}
