using AttentionLab.Attention;
using AttentionLab.Core;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Tests.Models;

/// <summary>The surgery's forward passes, decode caches and merges leave no live tensor behind (issue 13).</summary>
public class SurgeryLeakTests
{
    [Fact]
    public void MoeForwardFreesEverythingItDoesNotReturn()
    {
        torch.manual_seed(1);
        using var moe = new MixtureOfExperts(6, 8, 4, 2);
        using var x = torch.randn(2, 5, 6);
        LeakCheck.AssertNoLeak(() =>
        {
            var r = moe.Forward(x);
            foreach (var t in new[] { r.Output, r.AuxLoss, r.Routing.Logits, r.Routing.Probabilities, r.Routing.Indices, r.Routing.Gates }) t.Dispose();
        }, "MixtureOfExperts.Forward");
        LeakCheck.AssertNoLeak(() =>
        {
            using var scope = NewDisposeScope();                                           // one scope per training step
            var y = moe.call(x);
            (y.pow(2).mean() + moe.LastAuxLoss! * 0.01).backward();
        }, "MoE training step");
        // read after the scope of the forward pass has closed (as a model around the MoE closes its own): still alive, still in the graph
        Tensor aux;
        using (NewDisposeScope()) moe.call(x);
        aux = moe.LastAuxLoss!;
        Assert.False(aux.IsInvalid);
        aux.backward();
        Assert.True(moe.Router.Weight.weight!.grad is { } g && g.abs().sum().item<float>() > 0, "L_aux read after the scope reached no router weight");
    }

    [Fact]
    public void GroupedKvDecodeStateOwnsAndFreesItsCache()
    {
        torch.manual_seed(2);
        using var layer = new GroupedKvAttention(8, 4, KvHeadMap.MeanPool(4, 2), KvHeadMap.FromGroups([0, 1, 1, 0]), PositionKind.Rope);
        using var x = torch.randn(2, 6, 8);
        LeakCheck.AssertNoLeak(() =>
        {
            using var scope = NewDisposeScope();
            using var state = layer.NewState(2, ScalarType.Float32, CPU);
            for (int t = 0; t < 6; t++) layer.Step(x.select(1, t), state);
        }, "grouped-KV decode");
    }

    [Fact]
    public void LoraForwardAndMergeLeakNothing()
    {
        torch.manual_seed(3);
        using var model = new TinyGpt(new TinyGptConfig(Layers: 1, DModel: 8, Heads: 2, VocabSize: 5));
        var set = Lora.Apply(model, ["blocks.0.attn.qkv", "blocks.0.attn.proj"], 2, 2);
        using var ids = torch.randint(0, 5, new long[] { 1, 4 });
        LeakCheck.AssertNoLeak(() =>
        {
            model.call(ids).Dispose();
            set.Merge();
            set.Unmerge();
        }, "LoRA forward, merge and unmerge");
    }
}
