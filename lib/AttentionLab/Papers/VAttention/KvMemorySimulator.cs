namespace AttentionLab.Papers.VAttention;

/// <summary>One serving iteration of a simulation: batch, queue, memory and allocator activity after the step.</summary>
public sealed record SimStep(int Step, int Running, int Waiting, long UsedBytes, long ReservedBytes, long ReclaimableBytes,
    long AllocationCalls, long FreeCalls, int Preemptions)
{
    /// <summary>Bytes held for running requests: reserved − reclaimable (vAttention's deferred pages are unmapped on demand).</summary>
    public long HeldBytes => ReservedBytes - ReclaimableBytes;
    /// <summary>held − used: memory running requests hold but no token fills (internal fragmentation, over-reservation).</summary>
    public long WastedBytes => HeldBytes - UsedBytes;
}

/// <summary>A whole trace under one policy: every step, and the occupancy snapshot of vAttention's slots (when the policy is virtual).</summary>
public sealed record SimulationRun(MemoryPolicy Policy, string Name, IReadOnlyList<SimStep> Steps, int Completed,
    long CapacityAtMedian, long VirtualBytes, long BudgetBytes, OccupancySnapshot? Occupancy)
{
    /// <summary>Most requests running at once.</summary>
    public int MaxBatch => Steps.Max(s => s.Running);
    /// <summary>Mean batch over the steps with work.</summary>
    public double MeanBatch => Busy.Average(s => s.Running);
    /// <summary>Largest reserved bytes.</summary>
    public long PeakReserved => Steps.Max(s => s.ReservedBytes);
    /// <summary>Mean of 1 − used/held over steps that hold memory (internal fragmentation + over-reservation).</summary>
    public double MeanFragmentation => Held.Average(s => 1 - (double)s.UsedBytes / s.HeldBytes);
    /// <summary>Mean held − used, bytes.</summary>
    public double MeanWastedBytes => Held.Average(s => (double)s.WastedBytes);
    /// <summary>Mean reclaimable bytes (vAttention's deferred pages; 0 for the other policies).</summary>
    public double MeanReclaimableBytes => Steps.Average(s => (double)s.ReclaimableBytes);
    /// <summary>Mean used / budget over steps with work (how much of the GPU holds tokens).</summary>
    public double MeanUtilisation => Busy.Average(s => (double)s.UsedBytes / BudgetBytes);
    /// <summary>Allocation events over the run.</summary>
    public long AllocationCalls => Steps[^1].AllocationCalls;
    /// <summary>Release events over the run.</summary>
    public long FreeCalls => Steps[^1].FreeCalls;
    /// <summary>Allocation events per iteration.</summary>
    public double AllocationCallsPerStep => (double)AllocationCalls / Steps.Count;
    /// <summary>Requests preempted (memory ran out mid-decode; their KV is recomputed later).</summary>
    public int Preemptions => Steps[^1].Preemptions;
    /// <summary>Iterations until the last request finished.</summary>
    public int Makespan => Steps.Count;

    IEnumerable<SimStep> Busy => Steps.Where(s => s.Running > 0).DefaultIfEmpty(Steps[0]);
    IEnumerable<SimStep> Held => Steps.Where(s => s.HeldBytes > 0).DefaultIfEmpty(Steps[0] with { ReservedBytes = 1, ReclaimableBytes = 0, UsedBytes = 1 });
}

/// <summary>vAttention's slots at one step: pages mapped per layer tensor and tokens per slot (−1 = free), and the page size in tokens.</summary>
public sealed record OccupancySnapshot(int Step, long PageTokens, long[] MappedPages, long[] Tokens)
{
    /// <summary>
    /// Rows = slots, columns = page index (per layer tensor): the fill of each mapped page in [0, 1], 0 for a mapped page
    /// holding no token (deferred), −1 for an unmapped page.
    /// </summary>
    public double[][] Grid()
    {
        long columns = Math.Max(1, MappedPages.Max());
        return MappedPages.Select((pages, s) => Enumerable.Range(0, (int)columns).Select(j =>
        {
            if (j >= pages) return -1.0;
            long tokens = Math.Max(0, Tokens[s]);
            return Math.Clamp((tokens - j * PageTokens) / (double)PageTokens, 0, 1);
        }).ToArray()).ToArray();
    }
}

/// <summary>
/// A KV-memory simulator of continuous batching (a simulation: no GPU memory is touched). Each iteration: arrivals join
/// the queue (FCFS); every running request appends one token (if its policy cannot find memory, the most recently
/// admitted request is preempted and re-queued, vLLM's recompute preemption); finished requests are released; then
/// waiting requests are admitted with their prompt while the policy finds memory and a batch slot. The same trace runs
/// under every policy.
/// </summary>
public sealed class KvMemorySimulator
{
    /// <param name="budget">GPU memory for the KV cache.</param>
    /// <param name="geometry">the model's KV shape.</param>
    /// <param name="maxBatch">most requests in one batch (vLLM's max_num_seqs; vAttention's slots).</param>
    /// <param name="maxContext">longest request (vAttention's virtual buffer length; the static policy's reservation).</param>
    public KvMemorySimulator(GpuBudget budget, KvGeometry geometry, int maxBatch = 256, int maxContext = 8192)
    {
        ArgumentNullException.ThrowIfNull(budget);
        ArgumentNullException.ThrowIfNull(geometry);
        Budget = budget.Validate();
        Geometry = geometry.Validate();
        if (maxBatch <= 0) throw new ArgumentException($"maxBatch must be positive, got {maxBatch}.", nameof(maxBatch));
        if (maxContext <= 0) throw new ArgumentException($"maxContext must be positive, got {maxContext}.", nameof(maxContext));
        MaxBatch = maxBatch;
        MaxContext = maxContext;
    }

    /// <summary>The KV budget.</summary>
    public GpuBudget Budget { get; }
    /// <summary>The model's KV shape.</summary>
    public KvGeometry Geometry { get; }
    /// <summary>Batch slots.</summary>
    public int MaxBatch { get; }
    /// <summary>Longest request.</summary>
    public int MaxContext { get; }

    /// <summary>Runs <paramref name="trace"/> under each policy.</summary>
    public IReadOnlyList<SimulationRun> Run(RequestTrace trace, IEnumerable<MemoryPolicy> policies, int? snapshotStep = null)
    {
        ArgumentNullException.ThrowIfNull(policies);
        var list = policies.ToList();
        if (list.Count == 0) throw new ArgumentException("policies must not be empty.", nameof(policies));
        return list.Select(p => Run(trace, p, snapshotStep)).ToList();
    }

    /// <summary>
    /// Runs <paramref name="trace"/> under <paramref name="policy"/>. <paramref name="snapshotStep"/>: the iteration whose
    /// slot occupancy is kept (vAttention only); null keeps the first step with the largest batch.
    /// </summary>
    public SimulationRun Run(RequestTrace trace, MemoryPolicy policy, int? snapshotStep = null)
    {
        ArgumentNullException.ThrowIfNull(trace);
        ArgumentNullException.ThrowIfNull(policy);
        if (trace.Requests.Count == 0) throw new ArgumentException("trace has no requests.", nameof(trace));
        if (trace.MaxLen > MaxContext)
            throw new ArgumentException($"trace has a request of {trace.MaxLen} tokens, longer than maxContext {MaxContext}.", nameof(trace));
        var alloc = policy.Create(Budget, Geometry, MaxBatch, MaxContext);
        if (trace.Requests.Any(r => alloc.CapacityAt(r.FinalLen) < 1))
            throw new ArgumentException($"a request of the trace cannot fit under {policy.Name} even alone.", nameof(trace));

        var pending = new Queue<TraceRequest>(trace.Requests.OrderBy(r => r.Arrival).ThenBy(r => r.Id));
        var waiting = new LinkedList<TraceRequest>();
        var running = new List<(TraceRequest Request, long Len)>();     // in admission order
        var steps = new List<SimStep>();
        int completed = 0, preemptions = 0, best = -1;
        OccupancySnapshot? snapshot = null;
        int limit = trace.Requests.Max(r => r.Arrival) + 4 * trace.Requests.Sum(r => r.FinalLen) + 16;
        for (int step = 0; completed < trace.Requests.Count; step++)
        {
            if (step > limit) throw new InvalidOperationException($"{policy.Name}: the trace did not finish in {limit} iterations.");
            while (pending.Count > 0 && pending.Peek().Arrival <= step) waiting.AddLast(pending.Dequeue());

            // decode: every running request appends one token; preempt the newest when memory is short
            for (int i = 0; i < running.Count; i++)
            {
                var (req, len) = running[i];
                while (!alloc.TryGrow(req.Id, len + 1))
                {
                    int victim = running.Count - 1;
                    alloc.Release(running[victim].Request.Id);
                    waiting.AddFirst(running[victim].Request);
                    running.RemoveAt(victim);
                    preemptions++;
                    if (victim == i) break;
                }
                if (i < running.Count && running[i].Request.Id == req.Id) running[i] = (req, len + 1);
            }
            // release finished requests
            for (int i = running.Count - 1; i >= 0; i--)
                if (running[i].Len >= running[i].Request.FinalLen)
                {
                    alloc.Release(running[i].Request.Id);
                    running.RemoveAt(i);
                    completed++;
                }
            // admit (FCFS, head of line blocks)
            while (waiting.Count > 0 && running.Count < MaxBatch && alloc.TryAdmit(waiting.First!.Value.Id, waiting.First.Value.PromptLen))
            {
                running.Add((waiting.First.Value, waiting.First.Value.PromptLen));
                waiting.RemoveFirst();
            }
            long reclaimable = alloc is VirtualAllocator va ? va.ReclaimableBytes : 0;
            steps.Add(new SimStep(step, running.Count, waiting.Count, alloc.UsedBytes,
                alloc.ReservedBytes, reclaimable, alloc.AllocationCalls, alloc.FreeCalls, preemptions));
            if (alloc is VirtualAllocator v && (snapshotStep == step || (snapshotStep is null && running.Count > best)))
            {
                best = running.Count;
                var (pages, tokens) = v.Snapshot();
                snapshot = new OccupancySnapshot(step, v.PageTokens, pages, tokens);
            }
        }
        var median = trace.Requests.Select(r => r.FinalLen).OrderBy(x => x).ElementAt(trace.Requests.Count / 2);
        return new SimulationRun(policy, policy.Name, steps, completed, alloc.CapacityAt(median), alloc.VirtualBytes, Budget.KvBytes, snapshot);
    }
}
