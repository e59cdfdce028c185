using AttentionLab.Core;
using Microsoft.Data.Analysis;

namespace AttentionLab.Papers.Moh;

/// <summary>The exactness phase (float64): the gaps each check measured.</summary>
/// <param name="GatherMaxAbs">Gather path vs naive twin: max |Δ| over output and every gradient.</param>
/// <param name="MaskedMaxAbs">Masked path vs naive twin.</param>
/// <param name="BalanceMaxAbs">L_b vs its loop form.</param>
/// <param name="AllSharedVsMha">h_s = H, W_s = 0 vs dense MHA with the same weights.</param>
/// <param name="BadMaskRows">Tokens whose routed mask does not have exactly K ones.</param>
/// <param name="RoutedSumGap">max |Σ routed gates − K|.</param>
/// <param name="SharedSumGap">max |Σ shared gates − h_s|.</param>
/// <param name="UniformBalanceGap">|L_b − K| under uniform routing (W_r = 0).</param>
/// <param name="StepVsForward">Token-by-token decoding vs the parallel forward.</param>
public sealed record MohExactness(double GatherMaxAbs, double MaskedMaxAbs, double BalanceMaxAbs, double AllSharedVsMha, long BadMaskRows,
    double RoutedSumGap, double SharedSumGap, double UniformBalanceGap, double StepVsForward)
{
    /// <summary>Naive-twin tolerance (float64).</summary>
    public const double TwinTolerance = 1e-10;
    /// <summary>The spec's §6 tolerance for the identities.</summary>
    public const double IdentityTolerance = 1e-6;
}

/// <summary>One trained model: active share of heads, parameters, validation loss, accuracy where the rule fixes the next token.</summary>
public sealed record MohRun(string Model, double ActiveRatio, long Params, double ValLoss, double DeterminedAccuracy, double[] OpcodeAccuracy,
    IReadOnlyList<double> TrainLoss, double Seconds);

/// <summary>
/// The routed heads' activation frequency per opcode in one layer (rows opcode, columns routed head h_s … H−1), and the
/// mutual information (bits) between a token's opcode and its set of chosen routed heads, with the largest value of
/// <see cref="MohExperiment.NullShuffles"/> label shuffles (the finite-sample floor).
/// </summary>
public sealed record RoutingMap(string Model, int Layer, int Shared, IReadOnlyList<double[]> Frequency, double MutualInformation, double NullMax)
{
    /// <summary>From opcodes [N] and the routed mask [N, E] (float64, CPU).</summary>
    public static RoutingMap From(string model, int layer, int shared, long[] opcodes, TorchSharp.torch.Tensor mask, int seed)
    {
        ArgumentNullException.ThrowIfNull(opcodes);
        ArgumentNullException.ThrowIfNull(mask);
        int n = opcodes.Length, e = (int)mask.size(1);
        var m = mask.data<double>().ToArray();
        var subset = new int[n];
        var freq = Enumerable.Range(0, MohTask.Opcodes).Select(_ => new double[e]).ToArray();
        var count = new double[MohTask.Opcodes];
        for (int t = 0; t < n; t++)
        {
            count[opcodes[t]]++;
            for (int i = 0; i < e; i++)
                if (m[t * e + i] > 0.5) { freq[opcodes[t]][i]++; subset[t] |= 1 << i; }
        }
        for (int op = 0; op < MohTask.Opcodes; op++)
            for (int i = 0; i < e; i++) freq[op][i] /= Math.Max(1, count[op]);
        var labels = opcodes.Select(o => (int)o).ToArray();
        double mi = Information(labels, subset);
        var rng = new Random(seed + 17 * layer + 1);
        double nullMax = 0;
        var shuffled = (int[])labels.Clone();
        for (int s = 0; s < MohExperiment.NullShuffles; s++)
        {
            for (int i = shuffled.Length - 1; i > 0; i--) { int j = rng.Next(i + 1); (shuffled[i], shuffled[j]) = (shuffled[j], shuffled[i]); }
            nullMax = Math.Max(nullMax, Information(shuffled, subset));
        }
        return new RoutingMap(model, layer, shared, freq, mi, nullMax);
    }

    /// <summary>I(A; B) in bits from paired labels (plug-in estimate).</summary>
    public static double Information(int[] a, int[] b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Length != b.Length) throw new ArgumentException($"a has {a.Length} labels, b {b.Length}.", nameof(b));
        if (a.Length == 0) return 0;
        var joint = new Dictionary<(int, int), double>();
        var pa = new Dictionary<int, double>();
        var pb = new Dictionary<int, double>();
        foreach (var (x, y) in a.Zip(b))
        {
            joint[(x, y)] = joint.GetValueOrDefault((x, y)) + 1;
            pa[x] = pa.GetValueOrDefault(x) + 1;
            pb[y] = pb.GetValueOrDefault(y) + 1;
        }
        double n = a.Length, mi = 0;
        foreach (var ((x, y), c) in joint) mi += c / n * Math.Log2(c * n / (pa[x] * pb[y]));   // Σ p(a,b) log p(a,b)/(p(a)p(b))
        return Math.Max(0, mi);
    }
}

/// <summary>Routed gate values of the chosen heads (before α) and α2 per token, in the last layer of one model.</summary>
public sealed record GateSample(string Model, int Layer, double[] RoutedGates, double[] Alpha2);

/// <summary>Median forward time of one layer (no grad) at T tokens.</summary>
public sealed record MohTiming(string Form, int SeqLen, double ActiveRatio, double MedianMs);

/// <summary>Everything <see cref="MohExperiment.Run"/> measured, its tables, plot series and claims.</summary>
public sealed record MohResult(MohExperiment.Config Config, MohExactness Exactness, IReadOnlyList<MohRun> Runs, IReadOnlyList<RoutingMap> Routing,
    IReadOnlyList<GateSample> Gates, IReadOnlyList<MohTiming> Timings, double Seconds, IReadOnlyDictionary<string, double> PhaseSeconds) : IPaperResult
{
    /// <summary>The run of <paramref name="model"/>.</summary>
    public MohRun Run(string model) => Runs.FirstOrDefault(r => r.Model == model)
        ?? throw new ArgumentException($"no run '{model}' (have: {string.Join(", ", Runs.Select(r => r.Model))}).", nameof(model));

    /// <summary>Columns: model, active, params, attention-FLOPs proxy (active share of dense score FLOPs), val loss, accuracies.</summary>
    public DataFrame ToDataFrame() => Tables.From(Runs.Select(r => new
    {
        r.Model,
        Active = r.ActiveRatio,
        r.Params,
        AttnFlopsVsDense = r.ActiveRatio,
        r.ValLoss,
        r.DeterminedAccuracy,
        AccCopy2 = r.OpcodeAccuracy[(int)MohOpcode.Copy2],
        AccCopy3 = r.OpcodeAccuracy[(int)MohOpcode.Copy3],
        AccInduction = r.OpcodeAccuracy[(int)MohOpcode.Induction],
        AccBigram = r.OpcodeAccuracy[(int)MohOpcode.Bigram],
        TrainSeconds = r.Seconds,
    }));

    /// <summary>Columns: model, layer, mutual information and its shuffle floor (bits).</summary>
    public DataFrame RoutingFrame() => Tables.From(Routing.Select(m => new { m.Model, m.Layer, MiBits = m.MutualInformation, NullMaxBits = m.NullMax }));

    /// <summary>
    /// The heatmap of one MoH model: rows "L{layer} {opcode}", columns the routed heads "h{i}" (i = h_s … H−1), values the
    /// share of that opcode's tokens that chose the head.
    /// </summary>
    public (IReadOnlyList<double[]> Rows, string[] RowLabels, string[] ColumnLabels) Heatmap(string model)
    {
        var maps = Routing.Where(m => m.Model == model).OrderBy(m => m.Layer).ToList();
        if (maps.Count == 0) throw new ArgumentException($"no routing for '{model}'.", nameof(model));
        var rows = maps.SelectMany(m => m.Frequency).ToList();
        var rowLabels = maps.SelectMany(m => Enum.GetNames<MohOpcode>().Select(op => $"L{m.Layer} {op}")).ToArray();
        int e = maps[0].Frequency[0].Length;
        return (rows, rowLabels, Enumerable.Range(maps[0].Shared, e).Select(i => $"h{i}").ToArray());
    }

    /// <summary>Histogram of the chosen routed gates (before α) of one model's last layer: bin centres and counts over [0, K].</summary>
    public (double[] Centres, double[] Counts) GateHistogram(string model, int bins = 20)
    {
        if (bins < 1) throw new ArgumentException($"bins must be positive, got {bins}.", nameof(bins));
        var sample = Gates.FirstOrDefault(g => g.Model == model) ?? throw new ArgumentException($"no gates for '{model}'.", nameof(model));
        double top = Config.Variants.First(v => v.Name == model).TopK;
        var counts = new double[bins];
        foreach (var g in sample.RoutedGates) counts[Math.Clamp((int)(g / top * bins), 0, bins - 1)]++;
        return (Enumerable.Range(0, bins).Select(i => (i + 0.5) * top / bins).ToArray(), counts);
    }

    /// <summary>Columns: form, seq_len, active, median_ms.</summary>
    public DataFrame TimingFrame() => Tables.From(Timings);

    /// <summary>The claims: exactness, parity at 75 % (spec §6), head specialisation (MI over its shuffle floor), 50 % and timing reported.</summary>
    public ClaimSet Claims()
    {
        var claims = new ClaimSet(MohExperiment.Paper.Number, Config.Size);
        var ex = Exactness;
        string twin = $"≤ {Num.Sci(MohExactness.TwinTolerance, 0)} (float64, output and every gradient)";
        claims.Exactness("gather-equals-naive", "the gather path (routed heads only where chosen) equals the naive every-head-then-gate twin",
            $"max |Δ| {Num.Sci(ex.GatherMaxAbs)} (B 2, T 7, H 5, h_s 2, K 2, Dk 3, Dv 4)", twin, ex.GatherMaxAbs <= MohExactness.TwinTolerance);
        claims.Exactness("masked-equals-naive", "the masked path (every head, unchosen ones × 0) equals the naive twin",
            $"max |Δ| {Num.Sci(ex.MaskedMaxAbs)}", twin, ex.MaskedMaxAbs <= MohExactness.TwinTolerance);
        claims.Exactness("load-balance-equals-loop", "L_b = E²·mean_i(P_i f_i) equals its loop over tokens and heads",
            $"|Δ| {Num.Sci(ex.BalanceMaxAbs)}", "≤ 1e-10", ex.BalanceMaxAbs <= MohExactness.TwinTolerance);
        string spec = $"≤ {Num.Sci(MohExactness.IdentityTolerance, 0)} (spec §6)";
        claims.Exactness("all-shared-is-mha", "h_s = h with W_s = 0 is exactly MHA", $"max |Δ| {Num.Sci(ex.AllSharedVsMha)} vs the library's MHA, same weights",
            spec, ex.AllSharedVsMha <= MohExactness.IdentityTolerance);
        claims.Exactness("gate-sums", "each token has exactly K routed heads; routed gates sum to K, shared gates to h_s",
            $"{ex.BadMaskRows} tokens without K ones; |Σg_r − K| {Num.Sci(ex.RoutedSumGap)}, |Σg_s − h_s| {Num.Sci(ex.SharedSumGap)}",
            $"0 tokens; gaps {spec}",
            ex.BadMaskRows == 0 && ex.RoutedSumGap <= MohExactness.IdentityTolerance && ex.SharedSumGap <= MohExactness.IdentityTolerance);
        claims.Exactness("uniform-balance-is-k", "under uniform routing (p = 1/E) L_b = K", $"|L_b − K| {Num.Sci(ex.UniformBalanceGap)}", spec,
            ex.UniformBalanceGap <= MohExactness.IdentityTolerance);
        claims.Exactness("step-equals-forward", "token-by-token decoding (KV cache, gates per token) reproduces the parallel forward",
            $"max |Δ| {Num.Sci(ex.StepVsForward)}", "≤ 1e-10 (float64)", ex.StepVsForward <= MohExactness.TwinTolerance);

        var mha = Run(MohExperiment.DenseName);
        var m75 = Run(MohExperiment.Moh75Name);
        double r75 = m75.ValLoss / mha.ValLoss;
        claims.Claim("parity-at-75", "MoH with 75 % of heads active matches dense MHA at equal training budget",
            "MoH-LLaMA3-8B averages 64.0 % over 14 benchmarks, +2.4 % over LLaMA3-8B, with 75 % of heads (paper abstract, spec §7)",
            $"val loss MoH-75% {m75.ValLoss:F4}, MHA {mha.ValLoss:F4} nats/token (ratio {r75:F3}); same steps and batches, " +
            $"{m75.Params:N0} vs {mha.Params:N0} parameters",
            "loss(MoH-75 %) ≤ 1.02 × loss(MHA), seed 0 (spec §6)", r75 <= 1.02, asserted: false,
            note: "not asserted: at smoke size the ratio moves across seeds by more than the 2 % margin (seeds 0–2 measured once, " +
                  "docs/decisions.md); read it at full size with several seeds");

        var layers = Routing.Where(m => m.Model == MohExperiment.Moh75Name).ToList();
        bool specialised = layers.Count > 0 && layers.All(m => m.MutualInformation > m.NullMax && m.MutualInformation > 0);
        claims.Claim("head-specialisation", "routed heads specialise: the heads a token picks depend on its task (opcode)",
            "heads are assigned differently across categories and tasks (the paper's head-load figures; no single number, spec §5)",
            string.Join("; ", layers.Select(m => $"layer {m.Layer}: I(opcode; routed heads) {m.MutualInformation:F3} bits, shuffle max {m.NullMax:F3}")),
            $"MI > 0 in every layer, and above the largest of {MohExperiment.NullShuffles} label shuffles", specialised, asserted: true,
            deviation: "the spec's 'mutual information > 0' holds for any finite sample (plug-in bias), so MI must also beat the label-shuffle floor");

        var m50 = Runs.FirstOrDefault(r => r.Model == MohExperiment.Moh50Name);
        if (m50 is not null)
        {
            double r50 = m50.ValLoss / mha.ValLoss;
            claims.Reported("parity-at-50", "MoH with 50 % of heads active matches dense MHA (the paper's lower end)",
                "matches or beats MHA with 50–90 % of heads on ViT, DiT and LLMs (paper abstract, spec §7)",
                $"val loss MoH-50% {m50.ValLoss:F4}, MHA {mha.ValLoss:F4} (ratio {r50:F3})",
                "loss(MoH-50 %) ≤ 1.02 × loss(MHA) [ours: spec §6 names 75 % only]",
                r50 <= 1.02);
        }

        var dense = Timings.FirstOrDefault(t => t.Form.StartsWith("dense", StringComparison.Ordinal));
        var gather = Timings.FirstOrDefault(t => t.Form.EndsWith("gather", StringComparison.Ordinal));
        var masked = Timings.FirstOrDefault(t => t.Form.EndsWith("masked", StringComparison.Ordinal));
        if (dense is not null && gather is not null && masked is not null)
            claims.Reported("sparse-heads-cost", "FLOPs scale with the active heads; the gather path saves time, the masked path does not",
                "paper: inference cost ∝ active heads (no wall-clock figure for the toy scale)",
                $"one layer at T = {dense.SeqLen}: dense {dense.MedianMs:F2} ms, gather {gather.MedianMs:F2} ms, masked {masked.MedianMs:F2} ms " +
                $"(active {gather.ActiveRatio:P0})", "gather < dense (timing on a shared CPU: reported)", gather.MedianMs < dense.MedianMs);

        claims.Saw($"With {m75.ActiveRatio:P0} of heads per token, MoH reached a validation loss {r75:F3}× that of dense MHA after the same " +
            $"{Config.Steps} steps; determined-token accuracy {m75.DeterminedAccuracy:P1} vs {mha.DeterminedAccuracy:P1}.");
        if (m50 is not null)
            claims.Saw($"With {m50.ActiveRatio:P0} of heads the ratio was {m50.ValLoss / mha.ValLoss:F3}.");
        foreach (var m in layers)
            claims.Saw($"Layer {m.Layer} of MoH-75%: the opcode carries {m.MutualInformation:F3} bits about the chosen routed heads " +
                $"(label shuffles reach at most {m.NullMax:F3}).");
        if (dense is not null && gather is not null && masked is not null)
            claims.Saw($"At T = {dense.SeqLen} one layer took {gather.MedianMs / dense.MedianMs:F2}× the dense time by gather and " +
                $"{masked.MedianMs / dense.MedianMs:F2}× by masking.");
        return claims;
    }
}
