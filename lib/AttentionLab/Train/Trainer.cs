using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Train;

/// <summary>
/// How <see cref="Trainer.Fit"/> trains: AdamW, linear warm-up then cosine decay to MinLearningRateRatio·LearningRate,
/// gradient clipping (ClipNorm ≤ 0 turns it off), an evaluation every StepsPerEpoch steps (0: once, at the end),
/// a progress report every ReportEvery steps, and an optional wall-clock limit.
/// </summary>
public sealed record TrainOptions(int Steps, double LearningRate = 3e-3, double WeightDecay = 0.01, int WarmupSteps = 0,
    double MinLearningRateRatio = 0.1, double ClipNorm = 1.0, int StepsPerEpoch = 0, double Beta1 = 0.9, double Beta2 = 0.999,
    int ReportEvery = 25, TimeSpan? TimeLimit = null);

/// <summary>One progress report.</summary>
public sealed record TrainProgress(int Step, int TotalSteps, double Loss, double LearningRate, TimeSpan Elapsed)
{
    public override string ToString() => $"step {Step}/{TotalSteps}  loss {Loss:G4}  lr {LearningRate:G3}  {Elapsed.TotalSeconds:F1} s";
}

/// <summary>What the evaluation callback returned after an epoch.</summary>
public sealed record EpochMetrics(int Epoch, int Step, IReadOnlyDictionary<string, double> Metrics);

/// <summary>Per-step loss, learning rate and gradient norm (before clipping), per-epoch metrics, time.</summary>
public sealed record TrainHistory(IReadOnlyList<double> Losses, IReadOnlyList<double> LearningRates, IReadOnlyList<double> GradNorms,
    IReadOnlyList<EpochMetrics> Epochs, TimeSpan Elapsed, bool StoppedEarly);

/// <summary>A plain training loop: one dispose scope per step, so the tensors of a step never outlive it.</summary>
public static class Trainer
{
    /// <summary>
    /// Trains <paramref name="model"/> for options.Steps steps. <paramref name="loss"/> builds the loss of step i
    /// (it draws its own batch). <paramref name="evaluate"/> runs after every epoch in eval mode under no_grad.
    /// </summary>
    public static TrainHistory Fit(nn.Module model, Func<int, Tensor> loss, TrainOptions options,
        IProgress<TrainProgress>? progress = null, Func<int, IReadOnlyDictionary<string, double>>? evaluate = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(loss);
        Validate(options);
        var parameters = model.parameters().Where(p => p.requires_grad).ToList();
        using var optimizer = torch.optim.AdamW(parameters, options.LearningRate, options.Beta1, options.Beta2, weight_decay: options.WeightDecay);
        var (losses, rates, norms, epochs) = (new List<double>(), new List<double>(), new List<double>(), new List<EpochMetrics>());
        int perEpoch = options.StepsPerEpoch > 0 ? options.StepsPerEpoch : options.Steps;
        var clock = Stopwatch.StartNew();
        bool stopped = false;
        model.train();
        for (int step = 0; step < options.Steps; step++)
        {
            double lr = LearningRateAt(step, options);
            foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
            using (var scope = NewDisposeScope())
            {
                optimizer.zero_grad();
                var value = loss(step);
                value.backward();
                double norm = options.ClipNorm > 0 ? nn.utils.clip_grad_norm_(parameters, options.ClipNorm) : double.NaN;
                optimizer.step();
                losses.Add(value.item<float>());
                rates.Add(lr);
                norms.Add(norm);
            }
            bool last = step == options.Steps - 1;
            stopped = !last && options.TimeLimit is { } limit && clock.Elapsed > limit;
            if (progress is not null && ((step + 1) % options.ReportEvery == 0 || last || stopped))
                progress.Report(new TrainProgress(step + 1, options.Steps, losses[^1], lr, clock.Elapsed));
            if (evaluate is not null && ((step + 1) % perEpoch == 0 || last || stopped))
                epochs.Add(new EpochMetrics(epochs.Count + 1, step + 1, Evaluate(model, evaluate, epochs.Count + 1)));
            if (stopped) break;
        }
        return new TrainHistory(losses, rates, norms, epochs, clock.Elapsed, stopped);
    }

    /// <summary>lr(i): linear warm-up over WarmupSteps, then cosine from LearningRate down to MinLearningRateRatio·LearningRate.</summary>
    public static double LearningRateAt(int step, TrainOptions o)
    {
        if (step < o.WarmupSteps) return o.LearningRate * (step + 1) / o.WarmupSteps;           // linear warm-up
        int decay = Math.Max(1, o.Steps - o.WarmupSteps - 1);
        double progress = Math.Min(1.0, (double)(step - o.WarmupSteps) / decay);
        double cosine = 0.5 * (1 + Math.Cos(Math.PI * progress));                             // 1 → 0
        return o.LearningRate * (o.MinLearningRateRatio + (1 - o.MinLearningRateRatio) * cosine);
    }

    static IReadOnlyDictionary<string, double> Evaluate(nn.Module model, Func<int, IReadOnlyDictionary<string, double>> evaluate, int epoch)
    {
        model.eval();
        try
        {
            using var scope = NewDisposeScope();
            using var noGrad = torch.no_grad();
            return evaluate(epoch);
        }
        finally { model.train(); }
    }

    static void Validate(TrainOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        if (o.Steps <= 0) throw new ArgumentException($"Steps must be positive, got {o.Steps}.", nameof(o.Steps));
        if (!(o.LearningRate > 0)) throw new ArgumentException($"LearningRate must be positive, got {o.LearningRate}.", nameof(o.LearningRate));
        if (o.WarmupSteps < 0 || o.WarmupSteps > o.Steps) throw new ArgumentException($"WarmupSteps must be in [0, Steps], got {o.WarmupSteps}.", nameof(o.WarmupSteps));
        if (o.MinLearningRateRatio < 0 || o.MinLearningRateRatio > 1) throw new ArgumentException($"MinLearningRateRatio must be in [0, 1], got {o.MinLearningRateRatio}.", nameof(o.MinLearningRateRatio));
        if (o.StepsPerEpoch < 0) throw new ArgumentException($"StepsPerEpoch must be ≥ 0, got {o.StepsPerEpoch}.", nameof(o.StepsPerEpoch));
        if (o.ReportEvery <= 0) throw new ArgumentException($"ReportEvery must be positive, got {o.ReportEvery}.", nameof(o.ReportEvery));
    }
}
