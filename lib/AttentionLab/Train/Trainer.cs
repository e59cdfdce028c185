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

/// <summary>
/// A plain training loop: one dispose scope per step, so the tensors of a step never outlive it. Nothing in a step
/// waits for the device: the loss and the gradient norm stay on it (clipping is computed there too) and are read back
/// in one transfer at each progress report, evaluation and at the end, so a CUDA step is never a host round trip.
/// </summary>
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
        using var pending = new PendingScalars();                  // this run's losses and norms, still on the device
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
                var norm = options.ClipNorm > 0 ? ClipGradNorm(parameters, options.ClipNorm) : null;
                optimizer.step();
                pending.Add(value, norm);
                rates.Add(lr);
            }
            bool last = step == options.Steps - 1;
            stopped = !last && options.TimeLimit is { } limit && clock.Elapsed > limit;
            bool report = progress is not null && ((step + 1) % options.ReportEvery == 0 || last || stopped);
            bool epochEnd = evaluate is not null && ((step + 1) % perEpoch == 0 || last || stopped);
            if (report || epochEnd || last || stopped || pending.Count >= 256) pending.ReadInto(losses, norms);
            if (report) progress!.Report(new TrainProgress(step + 1, options.Steps, losses[^1], lr, clock.Elapsed));
            if (epochEnd) epochs.Add(new EpochMetrics(epochs.Count + 1, step + 1, Evaluate(model, evaluate!, epochs.Count + 1)));
            if (stopped) break;
        }
        return new TrainHistory(losses, rates, norms, epochs, clock.Elapsed, stopped);
    }

    /// <summary>
    /// Scales the gradients so that their joint 2-norm is at most <paramref name="maxNorm"/> (as torch.nn.utils.clip_grad_norm_:
    /// coefficient min(1, maxNorm / (norm + 1e-6))) and returns the norm before clipping — as a device scalar, without
    /// reading it back (libtorch's clip_grad_norm_ returns a double, which would wait for the device every step).
    /// </summary>
    public static Tensor ClipGradNorm(IReadOnlyList<Tensor> parameters, double maxNorm)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var grads = parameters.Select(p => p.grad).Where(g => g is not null).Select(g => g!).ToList();
        if (grads.Count == 0) return torch.zeros(Array.Empty<long>(), device: parameters.Count > 0 ? parameters[0].device : null).MoveToOuterDisposeScope();
        var total = torch.stack(grads.Select(g => g.norm().to(ScalarType.Float32)).ToArray()).norm();      // ‖(‖g₁‖, …, ‖gₙ‖)‖₂
        var coefficient = (maxNorm / (total + 1e-6)).clamp_max(1.0);
        foreach (var g in grads) g.mul_(coefficient.to(g.dtype));
        return total.MoveToOuterDisposeScope();
    }

    /// <summary>Per-step scalars kept on the device until they are read back, all at once.</summary>
    sealed class PendingScalars : IDisposable
    {
        readonly List<Tensor> losses = new();
        readonly List<Tensor?> norms = new();

        public int Count => losses.Count;

        /// <summary>Keeps detached copies of this step's loss and norm beyond the step's dispose scope.</summary>
        public void Add(Tensor loss, Tensor? norm)
        {
            losses.Add(loss.detach().reshape(Array.Empty<long>()).DetachFromDisposeScope());
            norms.Add(norm?.detach().DetachFromDisposeScope());
        }

        /// <summary>One device-to-host transfer for everything pending; appends to the lists and frees the tensors.</summary>
        public void ReadInto(List<double> lossValues, List<double> normValues)
        {
            if (losses.Count == 0) return;
            using var scope = NewDisposeScope();
            var device = losses[0].device;
            var all = torch.stack(losses.Concat(norms.Select(n => n ?? torch.full(Array.Empty<long>(), double.NaN, device: device)))
                .Select(t => t.to(ScalarType.Float64)).ToArray());
            var values = all.cpu().data<double>().ToArray();
            int n = losses.Count;
            lossValues.AddRange(values.Take(n));
            normValues.AddRange(values.Skip(n));
            Dispose();
        }

        public void Dispose()
        {
            foreach (var t in losses) t.Dispose();
            foreach (var t in norms) t?.Dispose();
            losses.Clear();
            norms.Clear();
        }
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
        if (o.WarmupSteps < 0 || o.WarmupSteps > o.Steps)
            throw new ArgumentException($"WarmupSteps must be in [0, Steps], got {o.WarmupSteps}.", nameof(o.WarmupSteps));
        if (o.MinLearningRateRatio < 0 || o.MinLearningRateRatio > 1)
            throw new ArgumentException($"MinLearningRateRatio must be in [0, 1], got {o.MinLearningRateRatio}.", nameof(o.MinLearningRateRatio));
        if (o.StepsPerEpoch < 0) throw new ArgumentException($"StepsPerEpoch must be ≥ 0, got {o.StepsPerEpoch}.", nameof(o.StepsPerEpoch));
        if (o.ReportEvery <= 0) throw new ArgumentException($"ReportEvery must be positive, got {o.ReportEvery}.", nameof(o.ReportEvery));
    }
}
