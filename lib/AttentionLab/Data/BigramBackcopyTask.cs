using TorchSharp;
using static TorchSharp.torch;

namespace AttentionLab.Data;

/// <summary>
/// The Bigram-Backcopy task (Guo et al. 2024, "Active-Dormant Attention Heads", arXiv 2410.13835): a Markov chain where
/// most tokens need no context at all and a few "trigger" tokens need one look back. A head that copies at triggers has
/// nothing useful to read everywhere else — the setting in which softmax heads park their weight on the first token
/// (an attention sink) and the survey's mitigations can instead attend nowhere, close a gate or use a register.
/// </summary>
/// <remarks>
/// Tokens: 0 = BOS (position 0 only); triggers 1 … K; ordinary tokens K+1 … V−1 (V = <see cref="VocabSize"/>).
/// A fixed chain (drawn once from <c>new Random(ChainSeed)</c>) gives every ordinary token a its successor set S(a):
/// <see cref="Branching"/> distinct ordinary tokens. One sequence x_0 … x_{T−1}:
///   x_0 = BOS;  x_1 ~ uniform over the ordinary tokens;
///   x_t ordinary:  x_{t+1} = a trigger (uniform over the K) with probability p = <see cref="TriggerRate"/>,
///                  else uniform over S(x_t)                                        (bigram: needs x_t only)
///   x_t trigger:   x_{t+1} = x_{t−1}                                               (backcopy: needs one look back)
/// A trigger always follows an ordinary token, so x_{t−1} is ordinary and never BOS. Labels[t] = x_{t+1} at every
/// position (the last position's label is drawn from the chain but its token is not in the sequence). The Bayes loss
/// per position: log(V − 1 − K) after BOS; 0 after a trigger; H = −p log(p/K) − (1 − p) log((1 − p)/B) after an
/// ordinary token (<see cref="BayesLoss"/>).
/// </remarks>
public sealed record BigramBackcopyTask(int VocabSize = 32, int Length = 32, int Triggers = 3, int Branching = 3,
    double TriggerRate = 0.2, int ChainSeed = 0)
{
    /// <summary>The beginning-of-sequence token (position 0 only).</summary>
    public const long BosToken = 0;

    /// <summary>Number of ordinary tokens, V − 1 − K.</summary>
    public int OrdinaryCount => VocabSize - 1 - Triggers;

    /// <summary>True for the trigger tokens 1 … K.</summary>
    public bool IsTrigger(long token) => token >= 1 && token <= Triggers;

    /// <summary>S(a) for every ordinary token a (index a − K − 1): the fixed successor sets of the chain.</summary>
    public long[][] Successors()
    {
        Validate();
        var rng = new Random(ChainSeed);
        return Enumerable.Range(0, OrdinaryCount)
            .Select(_ => Sampling.Distinct(rng, Triggers + 1, VocabSize, Branching)).ToArray();
    }

    /// <summary>Entropy (nats) of the next token after an ordinary token: −p log(p/K) − (1 − p) log((1 − p)/B).</summary>
    public double OrdinaryEntropy
    {
        get
        {
            double p = TriggerRate;
            double trig = p > 0 ? -p * Math.Log(p / Triggers) : 0;
            double ord = p < 1 ? -(1 - p) * Math.Log((1 - p) / Branching) : 0;
            return trig + ord;
        }
    }

    /// <summary>
    /// The Bayes-optimal mean loss on <paramref name="batch"/>: the next-token entropy at every scored position
    /// (log(V − 1 − K) at BOS, 0 at a trigger, <see cref="OrdinaryEntropy"/> at an ordinary token), averaged.
    /// </summary>
    public double BayesLoss(TokenBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var tokens = batch.Tokens.cpu().data<long>().ToArray();
        var labels = batch.Labels.cpu().data<long>().ToArray();
        double sum = 0;
        long n = 0;
        for (int i = 0; i < tokens.Length; i++)
        {
            if (labels[i] == TokenBatch.Ignore) continue;
            long x = tokens[i];
            sum += x == BosToken ? Math.Log(OrdinaryCount) : IsTrigger(x) ? 0 : OrdinaryEntropy;
            n++;
        }
        return n == 0 ? double.NaN : sum / n;
    }

    /// <summary><paramref name="count"/> sequences from <c>new Random(seed)</c> (the chain itself comes from <see cref="ChainSeed"/>).</summary>
    public BigramBackcopyBatch Generate(int count, int seed, Device? device = null)
    {
        Sampling.CheckCount(count);
        var successors = Successors();
        var rng = new Random(seed);
        int t = Length;
        var tokens = new long[count * t];
        var labels = new long[count * t];
        var copy = new bool[count * t];
        var row = new long[t + 1];                                                        // x_0 … x_T (x_T is the last label)
        for (int n = 0; n < count; n++)
        {
            row[0] = BosToken;
            row[1] = rng.NextInt64(Triggers + 1, VocabSize);                              // x_1 ~ uniform ordinary
            for (int i = 1; i < t; i++)
            {
                long x = row[i];
                if (IsTrigger(x)) row[i + 1] = row[i - 1];                                // backcopy
                else if (rng.NextDouble() < TriggerRate) row[i + 1] = rng.NextInt64(1, Triggers + 1);
                else row[i + 1] = successors[x - Triggers - 1][rng.Next(Branching)];       // bigram
            }
            for (int i = 0; i < t; i++)
            {
                tokens[n * t + i] = row[i];
                labels[n * t + i] = row[i + 1];
                copy[n * t + i] = IsTrigger(row[i]);
            }
        }
        using var scope = NewDisposeScope();
        return new BigramBackcopyBatch(TokenBatch.Make(tokens, count, t, device), TokenBatch.Make(labels, count, t, device),
            torch.tensor(copy, new long[] { count, t }, device: device));
    }

    void Validate()
    {
        if (Triggers < 1) throw new ArgumentException($"Triggers must be ≥ 1, got {Triggers}.", nameof(Triggers));
        if (Branching < 1) throw new ArgumentException($"Branching must be ≥ 1, got {Branching}.", nameof(Branching));
        if (OrdinaryCount < Branching)
            throw new ArgumentException(
                $"VocabSize {VocabSize} leaves {OrdinaryCount} ordinary tokens (V − 1 − K), fewer than Branching = {Branching}.", nameof(VocabSize));
        if (Length < 2) throw new ArgumentException($"Length must be ≥ 2, got {Length}.", nameof(Length));
        if (!(TriggerRate >= 0 && TriggerRate < 1)) throw new ArgumentException($"TriggerRate must be in [0, 1), got {TriggerRate}.", nameof(TriggerRate));
    }
}

/// <summary>Bigram-Backcopy sequences: Tokens, Labels, and Copy [N, T] (bool: the token is a trigger, so its label is the token before it).</summary>
public sealed class BigramBackcopyBatch : TokenBatch
{
    public BigramBackcopyBatch(Tensor tokens, Tensor labels, Tensor copy) : base(tokens, labels) => Copy = copy.DetachFromDisposeScope();

    /// <summary>[N, T] bool: positions whose next token is a backcopy.</summary>
    public Tensor Copy { get; }

    /// <summary>Share of backcopy positions where argmax(logits [N, T, V]) is the copied token.</summary>
    public double CopyAccuracy(Tensor logits)
    {
        using var scope = NewDisposeScope();
        var hit = logits.argmax(-1).eq(Labels).logical_and(Copy);
        return hit.sum().item<long>() / (double)Math.Max(1, Copy.sum().item<long>());
    }

    public override void Dispose() { Copy.Dispose(); base.Dispose(); }
}
