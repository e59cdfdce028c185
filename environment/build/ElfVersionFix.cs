// Marks unmet, unused GLIBCXX version needs of a shared library as weak, so it loads on an older libstdc++.
//
// Why: TorchSharp 0.107's libLibTorchSharp.so declares a need for GLIBCXX_3.4.32 (GCC >= 13); Debian 12 ships
// 3.4.30. The only symbol carrying that version, std::ios_base_library_init(), is never relocated against, so the
// need is cosmetic. Setting VER_FLG_WEAK (0x2) on that Vernaux entry of .gnu.version_r lets the dynamic loader
// accept the library (a weak version need that is not met is not an error).
//
// Safety rules: (1) only versions the machine's library really lacks are touched; (2) a version is marked weak only
// when no relocation refers to a symbol of that version, otherwise we stop with the symbol names; (3) idempotent;
// (4) only the copy passed in is written (callers pass bin/publish copies, never the NuGet cache).
//
// This file is compiled twice: as an MSBuild inline task (RoslynCodeTaskFactory, see ElfVersionFix.targets) and
// into the unit tests with ATTNLAB_ELF_NO_TASK defined. The task build targets netstandard2.0: keep to its APIs.
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;

namespace AttentionLab.Build
{
    /// <summary>Result of inspecting or patching one ELF file.</summary>
    public sealed class ElfFixReport
    {
        public List<string> MissingVersions { get; } = new List<string>();
        public List<string> Patched { get; } = new List<string>();
        public List<string> AlreadyWeak { get; } = new List<string>();
        public List<string> Messages { get; } = new List<string>();
    }

    /// <summary>Reads ELF64 little-endian version tables and sets the weak flag on unmet, unrelocated needs.</summary>
    public static class ElfVersionFixer
    {
        const uint ShtRela = 4, ShtRel = 9, ShtDynsym = 11, ShtGnuVerdef = 0x6ffffffd, ShtGnuVerneed = 0x6ffffffe, ShtGnuVersym = 0x6fffffff;
        const ushort VerFlgWeak = 0x2;

        sealed class Section { public uint Type; public ulong Offset, Size, EntSize; public uint Link, Info; }

        static List<Section> ReadSections(byte[] f)
        {
            if (f.Length < 64 || f[0] != 0x7f || f[1] != (byte)'E' || f[2] != (byte)'L' || f[3] != (byte)'F')
                throw new InvalidDataException("not an ELF file");
            if (f[4] != 2 || f[5] != 1) throw new InvalidDataException("only 64-bit little-endian ELF is supported");
            ulong shoff = BitConverter.ToUInt64(f, 0x28);
            int shentsize = BitConverter.ToUInt16(f, 0x3A), shnum = BitConverter.ToUInt16(f, 0x3C);
            var list = new List<Section>();
            for (int i = 0; i < shnum; i++)
            {
                int o = checked((int)shoff + i * shentsize);
                list.Add(new Section
                {
                    Type = BitConverter.ToUInt32(f, o + 4), Offset = BitConverter.ToUInt64(f, o + 0x18),
                    Size = BitConverter.ToUInt64(f, o + 0x20), Link = BitConverter.ToUInt32(f, o + 0x28),
                    Info = BitConverter.ToUInt32(f, o + 0x2C), EntSize = BitConverter.ToUInt64(f, o + 0x38),
                });
            }
            return list;
        }

        static string CString(byte[] f, ulong offset)
        {
            int start = checked((int)offset), end = start;
            while (f[end] != 0) end++;
            return Encoding.ASCII.GetString(f, start, end - start);
        }

        /// <summary>Version names a library defines (its .gnu.version_d), e.g. GLIBCXX_3.4.30.</summary>
        public static HashSet<string> DefinedVersions(byte[] f)
        {
            var sections = ReadSections(f);
            var result = new HashSet<string>(StringComparer.Ordinal);
            foreach (var s in sections.Where(s => s.Type == ShtGnuVerdef))
            {
                ulong strtab = sections[(int)s.Link].Offset, at = s.Offset;
                for (uint n = 0; n < s.Info; n++)
                {
                    ulong aux = at + BitConverter.ToUInt32(f, (int)at + 12);
                    result.Add(CString(f, strtab + BitConverter.ToUInt32(f, (int)aux)));
                    uint next = BitConverter.ToUInt32(f, (int)at + 16);
                    if (next == 0) break;
                    at += next;
                }
            }
            return result;
        }

        /// <summary>
        /// For every version <paramref name="target"/> needs from <paramref name="soname"/> that is absent from
        /// <paramref name="available"/>: set VER_FLG_WEAK when no relocation uses a symbol of it, else throw.
        /// Writes <paramref name="target"/> in place only when a flag changed.
        /// </summary>
        public static ElfFixReport Fix(string target, string soname, ISet<string> available, bool dryRun = false)
        {
            byte[] f = File.ReadAllBytes(target);
            var sections = ReadSections(f);
            var report = new ElfFixReport();
            var verneed = sections.FirstOrDefault(s => s.Type == ShtGnuVerneed);
            if (verneed == null) { report.Messages.Add("no .gnu.version_r section"); return report; }
            ulong strtab = sections[(int)verneed.Link].Offset, at = verneed.Offset;
            var unmet = new List<(ulong flagsOffset, ushort index, string name, bool weak)>();
            for (uint n = 0; n < verneed.Info; n++)
            {
                ushort count = BitConverter.ToUInt16(f, (int)at + 2);
                string file = CString(f, strtab + BitConverter.ToUInt32(f, (int)at + 4));
                ulong aux = at + BitConverter.ToUInt32(f, (int)at + 8);
                for (int a = 0; a < count; a++)
                {
                    string name = CString(f, strtab + BitConverter.ToUInt32(f, (int)aux + 8));
                    ushort flags = BitConverter.ToUInt16(f, (int)aux + 4), index = BitConverter.ToUInt16(f, (int)aux + 6);
                    if (file == soname && !available.Contains(name))
                        unmet.Add((aux + 4, index, name, (flags & VerFlgWeak) != 0));
                    aux += BitConverter.ToUInt32(f, (int)aux + 12);
                }
                uint next = BitConverter.ToUInt32(f, (int)at + 12);
                if (next == 0) break;
                at += next;
            }
            if (unmet.Count == 0) return report;

            var used = RelocatedSymbolsByVersion(f, sections);
            foreach (var u in unmet)
            {
                report.MissingVersions.Add(u.name);
                if (used.TryGetValue(u.index, out var symbols) && symbols.Count > 0)
                    throw new InvalidOperationException(
                        $"{Path.GetFileName(target)} relocates against {string.Join(", ", symbols)} from {u.name}, which this " +
                        $"machine's {soname} lacks; marking it weak would crash at run time. Install a newer {soname}.");
                if (u.weak) { report.AlreadyWeak.Add(u.name); continue; }
                ushort flags = BitConverter.ToUInt16(f, (int)u.flagsOffset);
                BitConverter.GetBytes((ushort)(flags | VerFlgWeak)).CopyTo(f, (int)u.flagsOffset);
                report.Patched.Add(u.name);
            }
            if (report.Patched.Count > 0 && !dryRun)
            {
                // Write beside, then rename: a process that has the old file mapped keeps its inode intact.
                // The original time stamp is kept so MSBuild's SkipUnchangedFiles does not copy the unpatched file again.
                var stamp = File.GetLastWriteTimeUtc(target);
                string tmp = target + ".elffix.tmp";
                File.WriteAllBytes(tmp, f);
                File.Delete(target);   // unlink: a process that has it mapped keeps the old inode
                File.Move(tmp, target);
                File.SetLastWriteTimeUtc(target, stamp);
            }
            return report;
        }

        /// <summary>Version index → names of dynamic symbols that some relocation refers to.</summary>
        static Dictionary<ushort, List<string>> RelocatedSymbolsByVersion(byte[] f, List<Section> sections)
        {
            int dynsymIndex = sections.FindIndex(s => s.Type == ShtDynsym);
            var versym = sections.FirstOrDefault(s => s.Type == ShtGnuVersym);
            var result = new Dictionary<ushort, List<string>>();
            if (dynsymIndex < 0 || versym == null) return result;
            var dynsym = sections[dynsymIndex];
            ulong dynstr = sections[(int)dynsym.Link].Offset;
            var relocated = new HashSet<ulong>();
            foreach (var s in sections.Where(s => (s.Type == ShtRela || s.Type == ShtRel) && s.Link == dynsymIndex))
            {
                ulong entsize = s.EntSize != 0 ? s.EntSize : (s.Type == ShtRela ? 24UL : 16UL);
                for (ulong o = s.Offset; o + entsize <= s.Offset + s.Size; o += entsize)
                    relocated.Add(BitConverter.ToUInt64(f, (int)o + 8) >> 32);
            }
            foreach (ulong sym in relocated)
            {
                if (sym == 0) continue;
                ushort version = (ushort)(BitConverter.ToUInt16(f, (int)(versym.Offset + 2 * sym)) & 0x7fff);
                string name = CString(f, dynstr + BitConverter.ToUInt32(f, (int)(dynsym.Offset + 24 * sym)));
                if (!result.TryGetValue(version, out var names)) result[version] = names = new List<string>();
                names.Add(name);
            }
            return result;
        }

        /// <summary>The machine's copy of a shared library, from the usual folders or `ldconfig -p`; null if none.</summary>
        public static string? FindSystemLibrary(string soname)
        {
            string[] dirs = { "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                              "/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib" };
            foreach (var d in dirs)
            {
                string p = Path.Combine(d, soname);
                if (File.Exists(p)) return p;
            }
            return null;
        }
    }

#if !ATTNLAB_ELF_NO_TASK
    /// <summary>MSBuild task: applies <see cref="ElfVersionFixer"/> for libstdc++ to each file in Files.</summary>
    public class ElfVersionFixTask : Microsoft.Build.Utilities.Task
    {
        [Microsoft.Build.Framework.Required] public Microsoft.Build.Framework.ITaskItem[] Files { get; set; } =
            Array.Empty<Microsoft.Build.Framework.ITaskItem>();
        public string SoName { get; set; } = "libstdc++.so.6";

        public override bool Execute()
        {
            string? system = ElfVersionFixer.FindSystemLibrary(SoName);
            if (system == null)
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.High, $"ElfVersionFix: no system {SoName} found; nothing patched.");
                return true;
            }
            var available = ElfVersionFixer.DefinedVersions(File.ReadAllBytes(system));
            foreach (var item in Files)
            {
                string path = item.ItemSpec;
                if (!File.Exists(path)) continue;
                try
                {
                    var r = ElfVersionFixer.Fix(path, SoName, available);
                    if (r.Patched.Count > 0)
                        Log.LogMessage(Microsoft.Build.Framework.MessageImportance.High,
                            $"ElfVersionFix: {path}: marked {string.Join(", ", r.Patched)} weak ({system} lacks them; no relocation uses them).");
                    else if (r.AlreadyWeak.Count > 0)
                        Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal, $"ElfVersionFix: {path}: already patched.");
                    else
                        Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal,
                            $"ElfVersionFix: {path}: {system} has every needed version; nothing patched.");
                }
                catch (Exception e)
                {
                    Log.LogError($"ElfVersionFix: {path}: {e.Message}");
                }
            }
            return !Log.HasLoggedErrors;
        }
    }
#endif
}
