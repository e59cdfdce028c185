using AttentionLab.Checkpoints;
using TorchSharp;

// Usage: dotnet run --project lib/AttentionLab.Checkpoints -c Release -- induction|delta|freeswim [--steps N] [--seed S] [--dry-run]
torch.set_num_threads(1);
string recipe = args.Length == 0 ? "" : args[0] == DeltaRecipe.Name ? "delta" : args[0] == InductionRecipe.Name ? "induction"
    : args[0] == FreeSwimRecipe.Name ? "freeswim" : args[0];
if (recipe is not ("induction" or "delta" or "freeswim"))
{
    Console.Error.WriteLine($"usage: AttentionLab.Checkpoints induction|delta|freeswim [--steps N] [--seed S] [--dry-run]   (writes data/models/{InductionRecipe.Name}.bin, {DeltaRecipe.Name}.bin or {FreeSwimRecipe.Name}.bin)");
    return 2;
}
int Option(string name, int fallback) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1]) : fallback; }
int steps = Option("--steps", recipe switch { "delta" => DeltaRecipe.DefaultSteps, "freeswim" => AttentionLab.Papers.FreeSwim.FreeSwimCheckpoint.Steps, _ => InductionRecipe.DefaultSteps });
int seed = Option("--seed", 0);
bool save = !args.Contains("--dry-run");
string command = $"dotnet run --project lib/AttentionLab.Checkpoints -c Release -- {recipe} --steps {steps} --seed {seed}";
return recipe switch
{
    "delta" => DeltaRecipe.Run(steps, seed, save, command),
    "freeswim" => FreeSwimRecipe.Run(steps, seed, save, command),
    _ => InductionRecipe.Run(steps, seed, save, command),
};
