using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.BottleneckedTransformer;

/// <summary>
/// The spec's stand-in for math reasoning (§4): modular assignment chains, one step per line, mod 10, with the lines of a
/// distractor chain interleaved. A line is six tokens <c>X u op d r \n</c> meaning X = u op d = r (mod 10), where u is a
/// digit (a chain's first line) or the variable the previous line of the same chain defined; the sequence ends with the
/// query <c>? Y r</c> for the last variable Y of the main chain. Every row of a batch has the same number of lines, so the
/// newlines (the step delimiters) sit at the same positions in every row. With <see cref="Pauses"/> = m, m pause tokens
/// follow every newline (the pause-token baseline's input).
/// </summary>
/// <param name="Variables">Distinct variable names (a row uses each at most once).</param>
/// <param name="Distractors">Lines of the distractor chain per row.</param>
/// <param name="Pauses">Pause tokens after each newline.</param>
public sealed record ArithmeticChainTask(int Variables = 16, int Distractors = 1, int Pauses = 0)
{
    /// <summary>Tokens: digits 0–9, variables 10 … 10+V−1, then +, ×, newline, ?, pause.</summary>
    public int Plus => 10 + Variables;
    public int Times => Plus + 1;
    public int Newline => Plus + 2;
    public int Query => Plus + 3;
    public int Pause => Plus + 4;
    public int VocabSize => Plus + 5;
    /// <summary>Tokens per line: 6 plus the pauses.</summary>
    public int LineLength => 6 + Pauses;

    /// <summary>
    /// <paramref name="count"/> rows with a main chain of <paramref name="chainLength"/> lines (and the distractor lines),
    /// drawn from <paramref name="seed"/>.
    /// </summary>
    public ChainBatch Generate(int count, int chainLength, int seed, Device? device = null)
    {
        Guard.Positive(count, nameof(count));
        Guard.Positive(chainLength, nameof(chainLength));
        if (Variables < 1) throw new ArgumentException($"Variables must be positive, got {Variables}.", nameof(Variables));
        if (Distractors < 0) throw new ArgumentException($"Distractors must be ≥ 0, got {Distractors}.", nameof(Distractors));
        if (Pauses < 0) throw new ArgumentException($"Pauses must be ≥ 0, got {Pauses}.", nameof(Pauses));
        int lines = chainLength + Distractors;
        if (lines > Variables) throw new ArgumentException($"{lines} lines need {lines} variables, the task has {Variables}.", nameof(chainLength));
        int T = lines * LineLength + 3;
        var rng = new Random(seed);
        var ids = new long[count * T];
        var operandLine = new int[count * lines];                                            // the line that defined u, or −1
        var results = new int[count * lines];
        var isMain = new bool[count * lines];
        for (int row = 0; row < count; row++)
        {
            var names = Enumerable.Range(0, Variables).OrderBy(_ => rng.Next()).Take(lines).ToArray();
            var order = Enumerable.Repeat(true, chainLength).Concat(Enumerable.Repeat(false, Distractors)).OrderBy(_ => rng.Next()).ToArray();
            int lastMain = -1, lastDistractor = -1, mainValue = 0, distractorValue = 0, mainVar = 0;
            int o = row * T;
            for (int line = 0; line < lines; line++)
            {
                bool main = order[line];
                int previous = main ? lastMain : lastDistractor;
                int u = previous < 0 ? rng.Next(10) : (main ? mainValue : distractorValue);
                bool times = rng.Next(2) == 1;
                int d = rng.Next(10), r = times ? u * d % 10 : (u + d) % 10;
                ids[o++] = 10 + names[line];
                ids[o++] = previous < 0 ? u : 10 + names[previous];
                ids[o++] = times ? Times : Plus;
                ids[o++] = d;
                ids[o++] = r;
                ids[o++] = Newline;
                for (int p = 0; p < Pauses; p++) ids[o++] = Pause;
                operandLine[row * lines + line] = previous;
                results[row * lines + line] = r;
                isMain[row * lines + line] = main;
                if (main) { lastMain = line; mainValue = r; mainVar = names[line]; }
                else { lastDistractor = line; distractorValue = r; }
            }
            ids[o++] = Query;
            ids[o++] = 10 + mainVar;
            ids[o] = mainValue;
        }
        // the positions whose logits are scored: each line's operand digit d (predicts r) and the query's variable (predicts the answer)
        var predict = Enumerable.Range(0, lines).Select(l => l * LineLength + 3).Append(T - 2).ToArray();
        var ends = Enumerable.Range(0, lines).Select(l => l * LineLength + 5).ToArray();
        return new ChainBatch(torch.tensor(ids, new long[] { count, T }, device: device).DetachFromDisposeScope(), predict, ends, chainLength, lines,
            LineLength, operandLine, results, isMain);
    }
}

/// <summary>
/// One generated batch: ids [N, T]; <see cref="Predict"/> the positions whose logits predict the next token (each line's
/// result, then the answer — the last entry); <see cref="StepEnds"/> the newline positions; per row and line, the line
/// that defined its operand (−1 for a digit), its result and whether it belongs to the main chain. Owns <see cref="Ids"/>.
/// </summary>
public sealed record ChainBatch(Tensor Ids, int[] Predict, int[] StepEnds, int ChainLength, int Lines, int LineLength, int[] OperandLine, int[] Results,
    bool[] IsMain) : IDisposable
{
    public long Count => Ids.size(0);
    public void Dispose() => Ids.Dispose();

    /// <summary>Cross-entropy of the scored positions: logits [N, T, V].</summary>
    public Tensor Loss(Tensor logits)
    {
        using var scope = NewDisposeScope();
        var at = torch.tensor(Predict.Select(p => (long)p).ToArray(), device: logits.device);
        var picked = logits.index_select(1, at);                                            // [N, P, V]
        var targets = Ids.index_select(1, at + 1);                                          // [N, P]
        return nn.functional.cross_entropy(picked.reshape(-1, picked.size(2)), targets.reshape(-1)).MoveToOuterDisposeScope();
    }

    /// <summary>Per row: every scored token right (teacher-forced chain) and the answer right.</summary>
    public (double ChainAccuracy, double AnswerAccuracy) Accuracy(Tensor logits)
    {
        using var scope = NewDisposeScope();
        var at = torch.tensor(Predict.Select(p => (long)p).ToArray(), device: logits.device);
        var right = logits.index_select(1, at).argmax(-1).eq(Ids.index_select(1, at + 1));  // [N, P]
        double chain = right.all(1).to(ScalarType.Float64).mean().item<double>();
        double answer = right.select(1, -1).to(ScalarType.Float64).mean().item<double>();
        return (chain, answer);
    }
}
