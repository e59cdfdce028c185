using System.Diagnostics;
using AttentionLab.Core;
using AttentionLab.Data;
using AttentionLab.Models;
using AttentionLab.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.Based;

/// <summary>
/// One model of the MQAR sweep: a family and its state knob (d′ for BASED and pure linear attention, w for the window;
/// unused for attention).
/// </summary>
/// <param name="Family">attention, based, pure linear (elu+1) or sliding window (each after a BaseConv layer, zoology's Figure-2 layout).</param>
/// <param name="Knob">d′ (BASED, pure linear) or w (sliding window: the keys each query attends, itself included — the
/// spec's w, not Based's <c>window_size</c>); 0 for attention.</param>
public sealed record MqarModel(BasedLayerKind Family, int Knob = 0)
{
    /// <summary>"attention", "based d′=16", "linear elu+1 d′=15", "swa w=8" (w in keys).</summary>
    public string Name => Family switch
    {
        BasedLayerKind.LinearAttention => $"based d′={Knob}",
        BasedLayerKind.PlainLinearAttention => $"linear elu+1 d′={Knob}",
        BasedLayerKind.SlidingWindow => $"swa w={Knob}",
        BasedLayerKind.Attention => "attention",
        _ => Family.ToString(),
    };

    /// <summary>"attention", "based", "linear (elu+1)", "sliding window": the colour of the Pareto plot.</summary>
    public string FamilyName => Family switch
    {
        BasedLayerKind.LinearAttention => "based",
        BasedLayerKind.PlainLinearAttention => "linear (elu+1)",
        BasedLayerKind.SlidingWindow => "sliding window",
        BasedLayerKind.Attention => "attention",
        _ => Family.ToString(),
    };
}

/// <summary>What one MQAR model reached: accuracy at the query positions, the loss curve and its streaming state after N tokens.</summary>
public sealed record MqarRun(MqarModel Model, double Accuracy, IReadOnlyList<double> Losses, long StateBytes, long Params, double StepVsForwardMaxAbs,
    double Seconds);

/// <summary>
/// Trains the zoology-style 2-layer MQAR models (token embedding, [BaseConv(k = 3), mixer], no MLP, no positions —
/// the convolution supplies the local shift) and measures accuracy at the query positions and the streaming state bytes.
/// </summary>
public static class BasedMqar
{
    /// <summary>Sizes of the MQAR runs.</summary>
    public sealed record Settings(int Vocab, int SeqLen, int Pairs, int DModel, int Steps, int BatchSize, double LearningRate,
        int TestCount, int Seed, int Heads = 1);

    /// <summary>Trains <paramref name="model"/> on freshly drawn sequences (each seen once) and evaluates on a held-out draw.</summary>
    public static MqarRun Train(MqarModel model, Settings s, Device device, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(s);
        var clock = Stopwatch.StartNew();
        using var scope = NewDisposeScope();
        var task = new MqarTask(VocabSize: s.Vocab, Length: s.SeqLen, Pairs: s.Pairs);
        using var train = task.Generate(s.Steps * s.BatchSize, s.Seed, device);
        using var test = task.Generate(s.TestCount, s.Seed + 1, device);
        var config = new TinyGptConfig(Layers: 2, DModel: s.DModel, Heads: s.Heads, VocabSize: s.Vocab, Mlp: false, MaxLength: s.SeqLen);
        var mixers = new BasedMixerConfig(FeatureDim: model.Family is BasedLayerKind.LinearAttention or BasedLayerKind.PlainLinearAttention ? model.Knob : 16,
            WindowKeys: model.Family == BasedLayerKind.SlidingWindow ? model.Knob : null);
        torch.manual_seed(s.Seed);
        using var net = BasedStack.Create(config, BasedStack.Mqar(model.Family), mixers).to(device);
        var options = new TrainOptions(s.Steps, s.LearningRate, WarmupSteps: s.Steps / 10, ReportEvery: Math.Max(1, s.Steps / 4));
        var history = Trainer.Fit(net, step =>
        {
            var rows = torch.arange(step * (long)s.BatchSize, (step + 1L) * s.BatchSize, device: device);
            return train.Loss(net.call(train.Tokens.index_select(0, rows)), rows);
        }, options, progress is null ? null : new InlineProgress<TrainProgress>(p => progress.Report($"  {model.Name}: {p}")));
        net.eval();
        double accuracy;
        using (torch.no_grad()) accuracy = test.Accuracy(net.call(test.Tokens));
        var (bytes, stepError) = StreamOne(net, test.Tokens.narrow(0, 0, 1));
        progress?.Report($"  {model.Name}: accuracy {accuracy:P1}, state {bytes:N0} B after {s.SeqLen} tokens, {clock.Elapsed.TotalSeconds:F1} s");
        return new MqarRun(model, accuracy, history.Losses, bytes, net.ParameterCount, stepError, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Streams one sequence [1, T] through <see cref="TinyGpt.Step"/>: state bytes at the end and max |Step − forward|.</summary>
    static (long Bytes, double MaxAbs) StreamOne(TinyGpt net, Tensor tokens)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var state = net.NewState(1);
        var steps = new List<Tensor>();
        for (int t = 0; t < tokens.shape[1]; t++) steps.Add(net.Step(tokens.select(1, t), state));
        double maxAbs = (torch.stack(steps, 1) - net.call(tokens)).abs().max().item<float>();
        return (state.Bytes, maxAbs);
    }

    /// <summary>Cross-entropy at the query positions of <paramref name="rows"/> (the other labels are −100).</summary>
    static Tensor Loss(this MqarBatch batch, Tensor logits, Tensor rows) =>
        nn.functional.cross_entropy(logits.reshape(-1, logits.shape[2]), batch.Labels.index_select(0, rows).reshape(-1), ignore_index: TokenBatch.Ignore);
}
