using AttentionLab.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Papers.PreplanAnchor;

/// <summary>What a response token is, for reading WAAD and FAI against the trace's structure.</summary>
public enum TraceRole
{
    /// <summary>The running total a step starts from (a copy of the previous result: a short look-back); n₁ in the first step.</summary>
    Carry,
    /// <summary>"+": the query that must fetch the step's operand from the question (a long look-back).</summary>
    Plus,
    /// <summary>The operand copied from the question.</summary>
    Operand,
    /// <summary>"=": the query that computes the step's result.</summary>
    Equals,
    /// <summary>An intermediate result (reused by the next step: the spec's anchor candidate).</summary>
    Result,
    /// <summary>";": the end of a step.</summary>
    Separator,
    /// <summary>"A": the query that writes the answer.</summary>
    AnswerMark,
    /// <summary>The final answer.</summary>
    Answer,
}

/// <summary>
/// "Countdown-lite" (P10 spec §4): a chained sum mod 10 with a written trace. The prompt is <c>BOS Q n₁ … n_K S</c>; the
/// response is <c>n₁ + n₂ = r₁ ; r₁ + n₃ = r₂ ; … ; A r_{K−1}</c> with r_k = r_{k−1} + n_{k+1} mod 10 (r₀ = n₁). Each step
/// opens by copying the running total (short look-back) and then fetches its operand from the question (a long look-back,
/// the spec's preplan candidate); each result is reused by the next step (the anchor candidate). Tokens: digits 0–9, then
/// +, =, ;, Q, S, A, BOS.
/// </summary>
/// <param name="Numbers">K, the question's numbers (≥ 2).</param>
public sealed record CountdownTrace(int Numbers = 4)
{
    public const long Plus = 10, EqualsSign = 11, Semicolon = 12, Question = 13, Solve = 14, Answer = 15, Bos = 16;
    /// <summary>Digits, six symbols and BOS.</summary>
    public const int VocabSize = 17;

    /// <summary>BOS Q n₁ … n_K S.</summary>
    public int PromptLength => Numbers + 3;
    /// <summary>Each of the K − 1 steps writes 6 tokens (total + n = r ;), then <c>A r</c>: 6(K − 1) + 2.</summary>
    public int ResponseLength => 6 * (Numbers - 1) + 2;
    /// <summary>Prompt and response.</summary>
    public int Length => PromptLength + ResponseLength;

    /// <summary>Checks K; an ArgumentException names it.</summary>
    public CountdownTrace Validate()
    {
        if (Numbers < 2 || Numbers > 12) throw new ArgumentException($"Numbers must be in 2 … 12, got {Numbers}.", nameof(Numbers));
        return this;
    }

    /// <summary>The role of each response position (0 = the first response token).</summary>
    public IReadOnlyList<TraceRole> Roles
    {
        get
        {
            var roles = new List<TraceRole>();
            for (int k = 1; k < Numbers; k++)
                roles.AddRange(new[] { TraceRole.Carry, TraceRole.Plus, TraceRole.Operand, TraceRole.Equals, TraceRole.Result, TraceRole.Separator });
            roles.Add(TraceRole.AnswerMark);
            roles.Add(TraceRole.Answer);
            return roles;
        }
    }

    /// <summary>The full trace of <paramref name="numbers"/> (each 0–9).</summary>
    public long[] Trace(IReadOnlyList<int> numbers)
    {
        ArgumentNullException.ThrowIfNull(numbers);
        if (numbers.Count != Numbers) throw new ArgumentException($"give {Numbers} numbers, got {numbers.Count}.", nameof(numbers));
        if (numbers.Any(n => n < 0 || n > 9)) throw new ArgumentException("numbers must be digits 0–9.", nameof(numbers));
        var t = new List<long> { Bos, Question };
        t.AddRange(numbers.Select(n => (long)n));
        t.Add(Solve);
        int total = numbers[0];
        for (int k = 1; k < Numbers; k++)
        {
            int next = (total + numbers[k]) % 10;
            t.AddRange(new long[] { total, Plus, numbers[k], EqualsSign, next, Semicolon });
            total = next;
        }
        t.Add(Answer);
        t.Add(total);
        return t.ToArray();
    }

    /// <summary>The answer Σ nᵢ mod 10.</summary>
    public static int Solution(IReadOnlyList<int> numbers) => numbers.Sum() % 10;

    /// <summary><paramref name="count"/> random questions from <paramref name="seed"/>.</summary>
    public int[][] Questions(int count, int seed)
    {
        Guard.Positive(count, nameof(count));
        Validate();
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => Enumerable.Range(0, Numbers).Select(_ => rng.Next(10)).ToArray()).ToArray();
    }

    /// <summary>Full traces [N, Length] of the questions.</summary>
    public Tensor Traces(IReadOnlyList<int[]> questions, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(questions);
        var rows = questions.SelectMany(Trace).ToArray();
        return torch.tensor(rows, device: device).reshape(questions.Count, Length);
    }

    /// <summary>Prompts [N, PromptLength] of the questions.</summary>
    public Tensor Prompts(IReadOnlyList<int[]> questions, Device? device = null)
    {
        using var scope = NewDisposeScope();
        return Traces(questions, device).narrow(1, 0, PromptLength).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Reward 1 when the response's last two tokens are <c>A r</c> with r the question's answer, else 0 — the outcome reward
    /// of the paper's RL setting (the trace itself is not checked).
    /// </summary>
    public double Reward(IReadOnlyList<long> response, IReadOnlyList<int> question)
    {
        ArgumentNullException.ThrowIfNull(response);
        ArgumentNullException.ThrowIfNull(question);
        if (response.Count != ResponseLength) throw new ArgumentException($"a response has {ResponseLength} tokens, got {response.Count}.", nameof(response));
        return response[^2] == Answer && response[^1] == Solution(question) ? 1.0 : 0.0;
    }
}
