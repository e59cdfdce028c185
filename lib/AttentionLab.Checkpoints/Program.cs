using AttentionLab.Checkpoints;
using TorchSharp;

// Usage: dotnet run --project lib/AttentionLab.Checkpoints -c Release -- induction|delta [--steps N] [--seed S] [--dry-run]
torch.set_num_threads(1);
bool delta = args.Length > 0 && (args[0] == "delta" || args[0] == DeltaRecipe.Name);
if (args.Length == 0 || !delta && args[0] != InductionRecipe.Name && args[0] != "induction")
{
    Console.Error.WriteLine($"usage: AttentionLab.Checkpoints induction|delta [--steps N] [--seed S] [--dry-run]   (writes data/models/{InductionRecipe.Name}.bin or {DeltaRecipe.Name}.bin)");
    return 2;
}
int Option(string name, int fallback) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1]) : fallback; }
int steps = Option("--steps", delta ? DeltaRecipe.DefaultSteps : InductionRecipe.DefaultSteps), seed = Option("--seed", 0);
string command = $"dotnet run --project lib/AttentionLab.Checkpoints -c Release -- {(delta ? "delta" : "induction")} --steps {steps} --seed {seed}";
return delta ? DeltaRecipe.Run(steps, seed, save: !args.Contains("--dry-run"), command)
    : InductionRecipe.Run(steps, seed, save: !args.Contains("--dry-run"), command);
