using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.BottleneckedTransformer;

/// <summary>
/// The naive twin of <see cref="BottleneckedRunner"/> and <see cref="CacheProcessor.Process"/>: one sequence at a time, one
/// token at a time through <see cref="TinyGpt.Step"/>, the attention mass read from <c>hook_pattern</c> into plain doubles,
/// the top-k chosen by sorting those doubles, the processor's attention as loops over entries, and the rewrite built row by row.
/// </summary>
public static class BottleneckedTransformerNaive
{
    /// <summary>Same contract as <see cref="BottleneckedRunner.Run"/> (the output's DeltaRms is empty).</summary>
    public static BottleneckedOutput Run(TinyGpt model, CacheProcessor? processor, Tensor input, IReadOnlyList<int> stepEnds, int topK)
    {
        BottleneckedRunner.Validate(model, processor, input, stepEnds, topK);
        using var scope = NewDisposeScope();
        long B = input.size(0), T = input.size(1);
        int layers = model.Blocks.Count;
        var ends = stepEnds.ToHashSet();
        var (logits, keys, values) = (new List<Tensor>(), new List<Tensor>[layers], new List<Tensor>[layers]);
        for (int l = 0; l < layers; l++) (keys[l], values[l]) = (new List<Tensor>(), new List<Tensor>());
        var selected = new List<long[]>[(int)B];
        for (long row = 0; row < B; row++)
        {
            selected[row] = new List<long[]>();
            using var state = model.NewState(1);
            var mass = new List<double>();                                                 // score_j of the current step
            var hooks = new List<IDisposable>();
            for (int l = 0; l < layers; l++)
                hooks.Add(model.HookPoints[$"blocks.{l}.attn.hook_pattern"].AddHook((p, _) =>
                {
                    var w = p.detach().to(ScalarType.Float64).cpu().data<double>().ToArray();   // [1, H, 1, t+1]
                    int tk = (int)p.size(3), heads = (int)p.size(1);
                    while (mass.Count < tk) mass.Add(0);
                    for (int h = 0; h < heads; h++)
                        for (int j = 0; j < tk; j++) mass[j] += w[h * tk + j];                // Σ_ℓ Σ_h p_{h,t,j}
                    return null;
                }));
            var outputs = new List<Tensor>();
            int start = 0;
            try
            {
                for (int t = 0; t < T; t++)
                {
                    outputs.Add(model.Step(input[row].narrow(0, t, 1), state));            // [1, V]
                    if (!ends.Contains(t)) continue;
                    if (processor is not null) Rewrite(model, processor, state, mass, start, t, topK, selected[row]);
                    for (int j = 0; j < mass.Count; j++) mass[j] = 0;                      // a new step
                    start = t + 1;
                }
            }
            finally { foreach (var h in hooks) h.Dispose(); }
            logits.Add(torch.stack(outputs, 1));
            for (int l = 0; l < layers; l++)
            {
                var s = (ConsolidatingKvState)state.Layers[l];
                keys[l].Add(s.Keys); values[l].Add(s.Values);
            }
        }
        var picked = new List<Tensor>();
        for (int step = 0; step < selected[0].Count; step++)
            picked.Add(torch.tensor(selected.SelectMany(r => r[step]).ToArray(), new long[] { B, selected[0][step].Length }, device: input.device));
        var output = new BottleneckedOutput(torch.cat(logits, 0), keys.Select(k => torch.cat(k, 0)).ToList(), values.Select(v => torch.cat(v, 0)).ToList(),
            picked, torch.zeros(0, 2, dtype: ScalarType.Float64));
        output.Logits.MoveToOuterDisposeScope();
        foreach (var t in output.Keys.Concat(output.Values).Concat(output.Selected)) t.MoveToOuterDisposeScope();
        output.DeltaRms.MoveToOuterDisposeScope();
        return output;
    }

    static void Rewrite(TinyGpt model, CacheProcessor processor, TinyGptState state, List<double> mass, int a, int end, int topK, List<long[]> selected)
    {
        int m = Math.Min(topK, a);
        var past = Enumerable.Range(0, a).OrderByDescending(j => mass[j]).ThenBy(j => j).Take(m).OrderBy(j => j).ToArray();   // P
        selected.Add(past.Select(j => (long)j).ToArray());
        var entries = Enumerable.Range(a, end - a + 1).Select(j => (Position: j, Type: 0L, Offset: (long)(j - a)))             // R
            .Concat(past.Select((j, rank) => (Position: j, Type: 1L, Offset: (long)rank))).ToList();
        for (int l = 0; l < model.Blocks.Count; l++)
        {
            var s = (ConsolidatingKvState)state.Layers[l];
            var (keys, values) = (s.Keys[0], s.Values[0]);                               // [T, H, Dk], [T, H, Dv]
            var delta = Process(processor, entries.Select(e => keys[e.Position]).ToList(), entries.Select(e => values[e.Position]).ToList(),
                entries.Select(e => e.Type).ToList(), entries.Select(e => e.Offset).ToList(), l);
            var kRows = new List<Tensor>();
            var vRows = new List<Tensor>();
            for (int j = 0; j < keys.size(0); j++)
            {
                int at = entries.FindIndex(e => e.Position == j);
                kRows.Add(at < 0 ? keys[j] : keys[j] + delta[at].DK);                    // K_j += ΔK_j
                vRows.Add(at < 0 ? values[j] : values[j] + delta[at].DV);                // V_j += ΔV_j
            }
            s.Replace(torch.stack(kRows).unsqueeze(0), torch.stack(vRows).unsqueeze(0));
        }
    }

    /// <summary>The processor on a list of entries (k [H, Dk], v [H, Dv] each), its attention as loops: ΔK [H, Dk], ΔV [H, Dv] per entry.</summary>
    public static List<(Tensor DK, Tensor DV)> Process(CacheProcessor p, IReadOnlyList<Tensor> k, IReadOnlyList<Tensor> v, IReadOnlyList<long> types,
        IReadOnlyList<long> offsets, int layer)
    {
        var (input, qkv, proj, fc1, fc2, output, type, offset, layerEmbed, ln1, ln2, ln3) = p.Parts;
        int m = k.Count, hp = p.ProcessorHeads, dh = p.Width / hp;
        var h = new List<Tensor>();
        for (int j = 0; j < m; j++)
            h.Add(input.call(torch.cat(new[] { k[j].reshape(-1), v[j].reshape(-1) })) + type.weight![types[j]]
                  + offset.weight![Math.Min(offsets[j], p.MaxOffset - 1)] + layerEmbed.weight![layer]);
        var parts = h.Select(x => qkv.call(ln1.call(x))).ToList();                      // [3 d_p] per entry
        var attended = new List<Tensor>();
        for (int i = 0; i < m; i++)
        {
            var heads = new List<Tensor>();
            for (int head = 0; head < hp; head++)
            {
                Tensor Q(int j) => parts[j].narrow(0, head * dh, dh);
                Tensor K(int j) => parts[j].narrow(0, p.Width + head * dh, dh);
                Tensor V(int j) => parts[j].narrow(0, 2 * p.Width + head * dh, dh);
                var scores = Enumerable.Range(0, m).Select(j => (Q(i) * K(j)).sum() / Math.Sqrt(dh)).ToList();   // every entry, no mask
                var max = torch.stack(scores).max().detach();
                var e = scores.Select(s => (s - max).exp()).ToList();
                var total = e.Aggregate((x, y) => x + y);
                var z = Enumerable.Range(0, m).Select(j => e[j] / total * V(j)).Aggregate((x, y) => x + y);
                heads.Add(z);
            }
            attended.Add(proj.call(torch.cat(heads)));
        }
        var result = new List<(Tensor, Tensor)>();
        for (int j = 0; j < m; j++)
        {
            var x = h[j] + attended[j];
            x = x + fc2.call(nn.functional.gelu(fc1.call(ln2.call(x))));
            var d = output.call(ln3.call(x));
            result.Add((d.narrow(0, 0, p.Heads * p.KeyDim).reshape(p.Heads, p.KeyDim), d.narrow(0, p.Heads * p.KeyDim, p.Heads * p.ValueDim).reshape(p.Heads,
                p.ValueDim)));
        }
        return result;
    }
}
