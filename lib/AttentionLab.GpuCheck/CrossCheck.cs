using System.Globalization;
using System.Runtime.InteropServices;
using AttentionLab.Attention;
using static TorchSharp.torch;

namespace AttentionLab.GpuCheck;

/// <summary>
/// Writes one reference-attention case for environment/gpu/xcheck.py: the inputs, the library's output on the check's
/// device and on the CPU, as raw little-endian float32, and meta.txt with the shapes. Python torch on the same machine
/// recomputes it independently (float64 math and its own SDPA) and reports the differences.
/// </summary>
public static class CrossCheck
{
    public const long B = 2, T = 128, H = 4, D = 32;

    public static void Export(string dir, Device device)
    {
        Directory.CreateDirectory(dir);
        using var scope = NewDisposeScope();
        var q = Correctness.Input(41, device, B, T, H, D);
        var k = Correctness.Input(42, device, B, T, H, D);
        var v = Correctness.Input(43, device, B, T, H, D);
        using var onDevice = ReferenceAttention.Softmax(q, k, v, causal: true);
        using var onCpu = ReferenceAttention.Softmax(q.cpu(), k.cpu(), v.cpu(), causal: true);
        Write(Path.Combine(dir, "q.f32"), q);
        Write(Path.Combine(dir, "k.f32"), k);
        Write(Path.Combine(dir, "v.f32"), v);
        Write(Path.Combine(dir, "out_device.f32"), onDevice.Output);
        Write(Path.Combine(dir, "out_cpu.f32"), onCpu.Output);
        File.WriteAllLines(Path.Combine(dir, "meta.txt"), new[]
        {
            $"layout=B,T,H,D", $"B={B}", $"T={T}", $"H={H}", $"D={D}", "causal=1",
            $"scale={(1.0 / Math.Sqrt(D)).ToString("R", CultureInfo.InvariantCulture)}", $"device={device}",
        });
    }

    static void Write(string path, Tensor t)
    {
        float[] data = t.detach().cpu().contiguous().data<float>().ToArray();
        File.WriteAllBytes(path, MemoryMarshal.AsBytes(data.AsSpan()).ToArray());
    }
}
