using AttentionLab.Interp;
using AttentionLab.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.RetrievalHeads;

/// <summary>The spec's §6 identities as measured (the exactness claims), and the mechanism picture of a masked head.</summary>
/// <param name="HandScore">Hand-built case, head (0, 0): all mass on the emitted needle token for 3 steps, needle span of 7.</param>
/// <param name="HandExpected">(#answer tokens)/(e − s) = 3/7.</param>
/// <param name="HandNaiveScore">The same through the naive twin.</param>
/// <param name="HandOthersMax">Largest score of the other hand-built heads (all on BOS; on a needle token ≠ emitted; on the emitted
/// token outside the needle): 0.</param>
/// <param name="TwinMaxAbs">Library score vs naive twin on random rows and contexts (|Δ| max over heads).</param>
/// <param name="MaskedRowMaxAbs">Masked head's pattern vs 1/(i+1), both the paper's zero-logit form and the library's uniform override.</param>
/// <param name="MaskedZMaxAbs">Masked head's z vs the naive mean of v over the prefix.</param>
/// <param name="NoMaskBitwise">Masking no heads gives bitwise the unmasked logits.</param>
/// <param name="Original">The head's pattern [T, T] on one prompt, unmasked (for the picture).</param>
/// <param name="Masked">The same head masked.</param>
/// <param name="PromptTokens">That prompt's tokens (labels).</param>
/// <param name="PictureLayer">The pictured head's layer.</param>
/// <param name="PictureHead">The pictured head.</param>
public sealed record RetrievalHeadsExactness(double HandScore, double HandExpected, double HandNaiveScore, double HandOthersMax, double TwinMaxAbs,
    double MaskedRowMaxAbs, double MaskedZMaxAbs, bool NoMaskBitwise, double[][] Original, double[][] Masked, long[] PromptTokens, int PictureLayer,
    int PictureHead);

/// <summary>Runs the exactness checks on a model and its task.</summary>
public static class RetrievalHeadsChecks
{
    /// <summary>All §6 checks; the masked head pictured is (last layer, head 0).</summary>
    public static RetrievalHeadsExactness Run(TinyGpt model, NiahTask task, int seed)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(task);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var rng = new Random(seed + 17);

        // 1. Hand-built rows: context BOS f KEY 3 4 VAL 5 6 7 f 5 KEY 3 4 VAL, needle span = the whole needle [2, 9) (7 tokens);
        //    emit 5, 6, 7. Head 0 looks at the emitted token in the needle, head 1 at BOS, head 2 at the needle's KEY (≠ w),
        //    head 3 at position 10, which holds 5 outside the needle (same id as v1, wrong place).
        long[] hand = [0, 40, 1, 3, 4, 2, 5, 6, 7, 41, 5, 1, 3, 4, 2];
        int s = 2, e = 9, S = hand.Length;
        var ctx = hand.ToList();
        var fast = new double[1, 4];
        var naive = new double[1, 4];
        for (int step = 0; step < 3; step++)
        {
            long w = hand[6 + step];
            double[][] rows = [OneHot(S, 6 + step), OneHot(S, 0), OneHot(S, 2), OneHot(S, 10)];
            RetrievalHeadsNaive.ScoreStep([rows], w, ctx, s, e, naive);
            RetrievalScore.AddStep([torch.tensor(rows.SelectMany(r => r).ToArray()).view(4, S)], w, ctx, s, e, fast);
        }
        double others = new[] { fast[0, 1], fast[0, 2], fast[0, 3], naive[0, 1], naive[0, 2], naive[0, 3] }.Max();

        // 2. Library vs naive twin on random rows (peaked softmax), random contexts, emitted tokens often in the needle.
        double twin = 0;
        for (int trial = 0; trial < 50; trial++)
        {
            int len = 1 + rng.Next(24), st = rng.Next(len), en = st + 1 + rng.Next(len - st);
            var context = Enumerable.Range(0, len).Select(_ => (long)rng.Next(5)).ToList();
            var a = torch.softmax(torch.randn(2, 3, len, dtype: ScalarType.Float64) * 4, -1);
            var rows = Enumerable.Range(0, 2).Select(l => Enumerable.Range(0, 3)
                .Select(h => a[l, h].data<double>().ToArray()).ToArray()).ToArray();
            long w = context[st + rng.Next(en - st)];
            var f = new double[2, 3];
            var n = new double[2, 3];
            RetrievalScore.AddStep([a[0], a[1]], w, context, st, en, f);
            RetrievalHeadsNaive.ScoreStep(rows, w, context, st, en, n);
            for (int l = 0; l < 2; l++) for (int h = 0; h < 3; h++) twin = Math.Max(twin, Math.Abs(f[l, h] - n[l, h]));
        }

        // 3. Masked head: pattern row i = 1/(i+1) (zero-logit hook and uniform override), z_i = mean_{j≤i} v_j.
        int layer = model.LayerCount - 1, head = 0;
        var prompt = task.Prompt(12, 0.5, rng);
        var device = model.FinalNorm.Weight.device;
        var x = torch.tensor(prompt.Tokens, device: device).unsqueeze(0);
        int t = prompt.Tokens.Length;
        var expected = RetrievalHeadsNaive.ZeroLogitPattern(t);
        string[] names = [ActName.Get("pattern", layer), ActName.Get("v", layer), ActName.Get("z", layer)];
        double rowErr = 0, zErr = 0;
        double[][]? masked = null;
        foreach (var hook in new[] { HeadMask.ZeroLogits(model, layer, head), HeadMask.Hooks(model, [(layer, head)])[0] })
        {
            using var active = model.Hooks(hook);
            var (_, cache) = model.RunWithCache(x, names.Contains);
            using (cache)
            {
                var a = cache["pattern", layer][0, head].to(ScalarType.Float64).cpu().data<double>().ToArray();
                for (int i = 0; i < t; i++) for (int j = 0; j < t; j++) rowErr = Math.Max(rowErr, Math.Abs(a[i * t + j] - expected[i, j]));
                masked ??= Rows(a, t);
                var v = cache["v", layer][0].select(1, head).to(ScalarType.Float64).cpu();       // [T, Dh]
                var z = cache["z", layer][0].select(1, head).to(ScalarType.Float64).cpu();
                int dh = (int)v.size(1);
                var vArr = new double[t, dh];
                var vData = v.data<double>().ToArray();
                for (int i = 0; i < t; i++) for (int c = 0; c < dh; c++) vArr[i, c] = vData[i * dh + c];
                var zNaive = RetrievalHeadsNaive.MaskedHeadOutput(vArr);
                var zData = z.data<double>().ToArray();
                for (int i = 0; i < t; i++) for (int c = 0; c < dh; c++) zErr = Math.Max(zErr, Math.Abs(zData[i * dh + c] - zNaive[i, c]));
            }
        }
        var (plain, plainCache) = model.RunWithCache(x, names[0].Equals);
        double[][] original;
        using (plainCache) original = Rows(plainCache["pattern", layer][0, head].to(ScalarType.Float64).cpu().data<double>().ToArray(), t);

        // 4. Masking no heads: bitwise the unmasked forward.
        Tensor none;
        using (model.Hooks(HeadMask.Hooks(model, Array.Empty<(int, int)>()))) none = model.call(x);
        bool bitwise = none.shape.SequenceEqual(plain.shape) && torch.eq(none, plain).all().item<bool>();

        return new RetrievalHeadsExactness(fast[0, 0], 3.0 / (e - s), naive[0, 0], others, twin, rowErr, zErr, bitwise,
            original, masked!, prompt.Tokens, layer, head);
    }

    static double[] OneHot(int n, int at)
    {
        var r = new double[n];
        r[at] = 1;
        return r;
    }

    static double[][] Rows(double[] flat, int t) => Enumerable.Range(0, t).Select(i => flat[(i * t)..((i + 1) * t)]).ToArray();
}
