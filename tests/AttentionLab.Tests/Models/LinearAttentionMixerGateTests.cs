using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

/// <summary>
/// A gated linear-attention mixer on <see cref="LinearAttentionMixer"/> (issue 12): g = logσ(x W_g) per token and head, with
/// and without a per-head decay — the forms, the hook path (explicit weights), decoding and the gate's gradient agree.
/// </summary>
public class LinearAttentionMixerGateTests
{
    sealed class ToyGatedMixer : LinearAttentionMixer
    {
        readonly Linear gate;
        readonly bool perHead;

        public ToyGatedMixer(int dModel, int heads, bool perHead)
            : base(nameof(ToyGatedMixer), dModel, heads, new LinearAttentionOptions { FeatureMap = FeatureMaps.EluPlusOne, Normalize = true, ChunkSize = 4 })
        {
            gate = nn.Linear(dModel, heads);
            this.perHead = perHead;
            RegisterComponents();
        }

        protected override bool HasTokenGate => true;
        protected override Tensor? TokenLogDecay(Tensor x) => nn.functional.logsigmoid(gate.call(x) + 1);          // g ≤ 0
        protected override Tensor? HeadLogDecay(Device device) =>
            perHead ? torch.tensor(new[] { -0.1, -0.4 }, ScalarType.Float64, device) : null;
        public Parameter GateWeight => gate.weight!;
    }

    static HookPoint Hook(nn.Module module, string name) => (HookPoint)module.named_modules().First(m => m.name == name).module;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void FormsHooksAndDecodingAgree(bool perHead)
    {
        torch.manual_seed(12);
        using var mixer = new ToyGatedMixer(8, 2, perHead);
        mixer.to(ScalarType.Float64);
        using var scope = NewDisposeScope();
        var x = torch.randn(2, 11, 8, dtype: ScalarType.Float64);
        var outputs = new[] { LinearForm.Parallel, LinearForm.Recurrent, LinearForm.Chunked }.Select(f =>
        {
            mixer.Form = f;
            return mixer.call(x);
        }).ToArray();
        AssertClose.Tensors(outputs[1], outputs[0], 1e-12, 1e-12, "recurrent vs parallel");
        AssertClose.Tensors(outputs[2], outputs[0], 1e-12, 1e-12, "chunked vs parallel");

        Tensor? pattern = null;
        using (Hook(mixer, "hook_pattern").AddHook((p, _) => { pattern = p.detach().clone().DetachFromDisposeScope(); return null; }))
            AssertClose.Tensors(mixer.call(x), outputs[0], 1e-12, 1e-12, "explicit weights (hook path) vs the engine");
        Assert.NotNull(pattern);
        Assert.Equal(0.0, pattern!.triu(1).abs().sum().item<double>());                  // causal
        pattern.Dispose();

        using (torch.no_grad())
        using (var state = mixer.NewState(2, ScalarType.Float64, CPU))
        {
            var steps = Enumerable.Range(0, 11).Select(t => mixer.Step(x.select(1, t), state)).ToArray();
            AssertClose.Tensors(torch.stack(steps, 1), outputs[0], 1e-12, 1e-12, "Step vs forward");
            Assert.Equal(11, state.Position);
        }

        mixer.zero_grad();
        mixer.call(x).square().sum().backward();
        Assert.True(mixer.GateWeight.grad is { } g && g.abs().sum().item<double>() > 0, "the gate's projection gets a gradient");
    }
}
