using AttentionLab.Checkpoints;
using TorchSharp;

// Usage: dotnet run --project lib/AttentionLab.Checkpoints -c Release --
//            induction|delta|freeswim|landmark|sinklora|bam|affine-scaled|dha|hcam <local|full|hcam>|rcmha <mha|mdha|rmha|rcmha>
//            |retrieval-heads|circuit-reuse [--steps N] [--seed S] [--dry-run]
torch.set_num_threads(1);
string? recipe = args.Length == 0 ? null
    : args[0] is "delta" or DeltaRecipe.Name ? "delta"
    : args[0] is "induction" or InductionRecipe.Name ? "induction"
    : args[0] is "freeswim" or FreeSwimRecipe.Name ? "freeswim"
    : args[0] is "landmark" or LandmarkRecipe.Name ? "landmark"
    : args[0] is "sinklora" or SinkLoraRecipe.Name ? "sinklora"
    : args[0] is "bam" or BamRecipe.Name ? "bam"
    : args[0] is AffineScaledRecipe.Name ? "affine-scaled"
    : args[0] is "dha" or DhaRecipe.Name ? "dha"
    : args[0] is "retrieval-heads" or RetrievalHeadsRecipe.Name ? "retrieval-heads"
    : args[0] is "circuit-reuse" or CircuitReuseRecipe.Name ? "circuit-reuse"
    : args[0] is HcamRecipe.Name && args.Length > 1 ? "hcam"
    : args[0] is RcmhaRecipe.Name && args.Length > 1 ? "rcmha" : null;
if (recipe is null)
{
    Console.Error.WriteLine("usage: AttentionLab.Checkpoints induction|delta|freeswim|landmark|sinklora|bam|affine-scaled|dha|hcam <local|full|hcam>" +
        "|rcmha <mha|mdha|rmha|rcmha>|retrieval-heads|circuit-reuse [--steps N] [--seed S] [--dry-run]   " +
        $"(writes data/models/{InductionRecipe.Name}.bin, {DeltaRecipe.Name}.bin, {FreeSwimRecipe.Name}.bin, " +
        $"{LandmarkRecipe.Name}.bin, {SinkLoraRecipe.Name}.bin, {BamRecipe.Name}.bin, affine-scaled-<variant>.bin, {DhaRecipe.Name}.bin, " +
        "hcam-recall-<model>.bin, rcmha-charlm-<variant>.bin, " + $"{RetrievalHeadsRecipe.Name}.bin or {CircuitReuseRecipe.Name}.bin)");
    return 2;
}
int Option(string name, int fallback) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1]) : fallback; }
int steps = Option("--steps", recipe switch
{
    "delta" => DeltaRecipe.DefaultSteps,
    "freeswim" => AttentionLab.Papers.FreeSwim.FreeSwimCheckpoint.Steps,
    "landmark" => LandmarkRecipe.DefaultSteps,
    "sinklora" => SinkLoraRecipe.DefaultSteps,
    "bam" => BamRecipe.DefaultSteps,
    "affine-scaled" => AffineScaledRecipe.DefaultSteps,
    "dha" => DhaRecipe.Recipe.Steps,
    "hcam" => HcamRecipe.DefaultSteps,
    "rcmha" => RcmhaRecipe.DefaultSteps,
    "retrieval-heads" => RetrievalHeadsRecipe.DefaultSteps,
    "circuit-reuse" => CircuitReuseRecipe.DefaultSteps,
    _ => InductionRecipe.DefaultSteps,
});
int seed = Option("--seed", 0);
bool save = !args.Contains("--dry-run");
string command = recipe is "hcam" or "rcmha" ? "" : $"dotnet run --project lib/AttentionLab.Checkpoints -c Release -- {recipe} --steps {steps} --seed {seed}";
return recipe switch
{
    "delta" => DeltaRecipe.Run(steps, seed, save, command),
    "freeswim" => FreeSwimRecipe.Run(steps, seed, save, command),
    "landmark" => LandmarkRecipe.Run(steps, seed, save, command),
    "sinklora" => SinkLoraRecipe.Run(steps, seed, save, command),
    "bam" => BamRecipe.Run(steps, seed, save, command),
    "affine-scaled" => AffineScaledRecipe.Run(steps, seed, save, command),
    "dha" => DhaRecipe.Run(steps, seed, save, command),
    "hcam" => HcamRecipe.Run(args[1], steps, seed, save, Option("--evals", 6)),
    "rcmha" => RcmhaRecipe.Run(args[1], steps, seed, save, Option("--evals", 4)),
    "retrieval-heads" => RetrievalHeadsRecipe.Run(steps, seed, save, command),
    "circuit-reuse" => CircuitReuseRecipe.Run(steps, seed, save, command),
    _ => InductionRecipe.Run(steps, seed, save, command),
};
