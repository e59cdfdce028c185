using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace AttentionLab.Core;

/// <summary>
/// Runs once, when the library is first touched (module initializer), before any torch or Plotly.NET call:
/// installs the FSharp.Core redirect and, for TorchBackend=external, loads libtorch from ATTNLAB_TORCH_LIB_DIR.
/// </summary>
public static class TorchRuntime
{
    /// <summary>Environment variable naming a libtorch lib folder (TorchBackend=external).</summary>
    public const string LibDirVariable = "ATTNLAB_TORCH_LIB_DIR";

    static readonly List<string> loaded = new();

    /// <summary>Full paths of the native libtorch libraries loaded from <see cref="LibDirVariable"/>.</summary>
    public static IReadOnlyList<string> ExternalLibraries => loaded;

#pragma warning disable CA2255 // a module initializer is the one place that runs before the first torch call
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Initialize()
    {
        InstallFSharpCoreRedirect();
        LoadExternalLibTorch(Environment.GetEnvironmentVariable(LibDirVariable));
    }

    /// <summary>
    /// Plotly.NET 6 is built against FSharp.Core 10.1; the dotnet-interactive kernel already carries 10.0 and the
    /// runtime refuses the request. Answer any FSharp.Core request with the one already loaded.
    /// </summary>
    static void InstallFSharpCoreRedirect()
    {
        AppDomain.CurrentDomain.AssemblyResolve += (_, args) =>
        {
            var wanted = new AssemblyName(args.Name);
            if (wanted.Name != "FSharp.Core") return null;
            return AppDomain.CurrentDomain.GetAssemblies()
                .FirstOrDefault(a => a.GetName().Name == "FSharp.Core");
        };
    }

    /// <summary>
    /// Loads libc10, libtorch_cpu, libtorch (and the CUDA parts when present) by full path, so that TorchSharp's
    /// native bridge finds them already in the process. Does nothing when <paramref name="libDir"/> is empty.
    /// </summary>
    public static void LoadExternalLibTorch(string? libDir)
    {
        if (string.IsNullOrWhiteSpace(libDir) || loaded.Count > 0) return;
        if (!Directory.Exists(libDir))
            throw new DirectoryNotFoundException($"{LibDirVariable}='{libDir}' is not a folder (it should name libtorch's lib folder).");
        string ext = OperatingSystem.IsWindows() ? ".dll" : OperatingSystem.IsMacOS() ? ".dylib" : ".so";
        string prefix = OperatingSystem.IsWindows() ? "" : "lib";
        string[] required = { "c10", "torch_cpu", "torch" };
        string[] optional = { "c10_cuda", "torch_cuda" };
        foreach (var name in required.Concat(optional))
        {
            string path = Path.Combine(libDir, prefix + name + ext);
            if (!File.Exists(path))
            {
                if (required.Contains(name))
                    throw new FileNotFoundException($"{LibDirVariable}='{libDir}' has no {prefix + name + ext}.", path);
                continue;
            }
            NativeLibrary.Load(path);
            loaded.Add(path);
        }
    }
}
