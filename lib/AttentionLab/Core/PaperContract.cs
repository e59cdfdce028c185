using System.Reflection;
using Microsoft.Data.Analysis;
using TorchSharp;

namespace AttentionLab.Core;

/// <summary>A paper in the catalogue: its number, short title and notebook slug (notebook <c>NN-slug.ipynb</c>).</summary>
public sealed record PaperInfo(int Number, string Title, string Slug)
{
    /// <summary>"39-lightning-attention".</summary>
    public string NotebookName => $"{Number:00}-{Slug}";
}

/// <summary>An experiment's configuration: presets per run size, and the size label its claims are reported at.</summary>
public interface IPaperConfig<TSelf> where TSelf : IPaperConfig<TSelf>
{
    /// <summary>The preset for <paramref name="size"/> (smoke: a CPU notebook in under a minute; full: about 10 GPU minutes).</summary>
    static abstract TSelf For(RunSize size);

    /// <summary>"smoke" or "full" for the presets; "custom" once a user changes a field (claims are reported at this label).</summary>
    string Size { get; }
}

/// <summary>What every paper's run returns: a table of its results and its claim records.</summary>
public interface IPaperResult
{
    /// <summary>The run's main table.</summary>
    DataFrame ToDataFrame();

    /// <summary>The paper's claims as this run measured them (see <see cref="ClaimSet"/>).</summary>
    ClaimSet Claims();
}

/// <summary>
/// The one paper contract: <c>Config.For(RunSize)</c> and <c>Run(config, device, progress)</c>, returning a result with
/// <c>ToDataFrame()</c> and <c>Claims()</c>. Experiments are found by reflection (<see cref="PaperCatalog"/>): a new paper
/// registers nothing by hand.
/// </summary>
public interface IPaperExperiment<TConfig, TResult>
    where TConfig : IPaperConfig<TConfig>
    where TResult : IPaperResult
{
    /// <summary>Number, title and notebook of the paper.</summary>
    static abstract PaperInfo Paper { get; }

    /// <summary>Runs the experiment on <paramref name="device"/>, reporting progress lines.</summary>
    static abstract TResult Run(TConfig config, torch.Device device, IProgress<string>? progress = null);
}

/// <summary>One experiment found in the library: its paper and a way to run a preset.</summary>
public sealed record PaperEntry(PaperInfo Info, Type Experiment, Func<RunSize, torch.Device, IProgress<string>?, IPaperResult> RunPreset)
{
    public override string ToString() => $"P{Info.Number:00} {Info.Title} ({Experiment.Name})";
}

/// <summary>Every <see cref="IPaperExperiment{TConfig, TResult}"/> in the library, by paper number.</summary>
public static class PaperCatalog
{
    static readonly Lazy<IReadOnlyList<PaperEntry>> all = new(() => Find(typeof(PaperCatalog).Assembly));

    /// <summary>The library's experiments, sorted by paper number.</summary>
    public static IReadOnlyList<PaperEntry> All => all.Value;

    /// <summary>The experiment of paper <paramref name="number"/>.</summary>
    public static PaperEntry Get(int number) => All.FirstOrDefault(e => e.Info.Number == number)
        ?? throw new ArgumentException(
            $"no experiment for paper {number}; the library has {string.Join(", ", All.Select(e => e.Info.Number))}.", nameof(number));

    /// <summary>Every type in <paramref name="assembly"/> implementing the contract.</summary>
    public static IReadOnlyList<PaperEntry> Find(Assembly assembly)
    {
        var list = new List<PaperEntry>();
        foreach (var type in assembly.GetTypes())
        {
            var contract = type.GetInterfaces().FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IPaperExperiment<,>));
            if (contract is null || type.IsAbstract && !type.IsSealed) continue;
            var args = contract.GetGenericArguments();
            var runPreset = typeof(PaperCatalog).GetMethod(nameof(RunPresetOf), BindingFlags.NonPublic | BindingFlags.Static)!
                .MakeGenericMethod(type, args[0], args[1]);
            var info = (PaperInfo)typeof(PaperCatalog).GetMethod(nameof(InfoOf), BindingFlags.NonPublic | BindingFlags.Static)!
                .MakeGenericMethod(type, args[0], args[1]).Invoke(null, null)!;
            var run = runPreset.CreateDelegate<Func<RunSize, torch.Device, IProgress<string>?, IPaperResult>>();
            list.Add(new PaperEntry(info, type, run));
        }
        var twice = list.GroupBy(e => e.Info.Number).FirstOrDefault(g => g.Count() > 1);
        if (twice is not null)
            throw new InvalidOperationException($"paper {twice.Key} has two experiments: {string.Join(", ", twice.Select(e => e.Experiment.Name))}.");
        return list.OrderBy(e => e.Info.Number).ToList();
    }

    static PaperInfo InfoOf<TExperiment, TConfig, TResult>()
        where TExperiment : IPaperExperiment<TConfig, TResult> where TConfig : IPaperConfig<TConfig> where TResult : IPaperResult
        => TExperiment.Paper;

    static IPaperResult RunPresetOf<TExperiment, TConfig, TResult>(RunSize size, torch.Device device, IProgress<string>? progress)
        where TExperiment : IPaperExperiment<TConfig, TResult> where TConfig : IPaperConfig<TConfig> where TResult : IPaperResult
        => TExperiment.Run(TConfig.For(size), device, progress);
}
