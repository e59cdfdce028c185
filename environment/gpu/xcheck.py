"""Recomputes the bundle's reference-attention case (xcheck/) with Python torch on the same machine.

usage: python3 xcheck.py XCHECK_DIR [CSV_OUT]
Reads meta.txt and the raw float32 files the bundle wrote (q, k, v [B,T,H,D]; the library's output on the check's device
and on the CPU), computes causal softmax attention in float64 on the CPU and with torch's own SDPA (float32, on CUDA when
available), and prints/writes the max abs differences. Exits 1 when the library's outputs differ from the float64
reference by more than 1e-4.
"""
import csv
import os
import sys

import torch


def main() -> int:
    folder = sys.argv[1]
    out_csv = sys.argv[2] if len(sys.argv) > 2 else None
    meta = dict(line.strip().split("=", 1) for line in open(os.path.join(folder, "meta.txt")) if "=" in line)
    b, t, h, d = (int(meta[x]) for x in ("B", "T", "H", "D"))
    scale = float(meta["scale"])

    def load(name: str) -> torch.Tensor:
        with open(os.path.join(folder, name), "rb") as f:
            data = bytearray(f.read())
        return torch.frombuffer(data, dtype=torch.float32).reshape(b, t, h, d).clone()

    q, k, v = load("q.f32"), load("k.f32"), load("v.f32")
    ours_device, ours_cpu = load("out_device.f32"), load("out_cpu.f32")

    # float64 reference: [B,H,T,D], s = scale q k^T, causal mask, softmax, times v.
    qh, kh, vh = (x.double().permute(0, 2, 1, 3) for x in (q, k, v))
    s = (qh @ kh.transpose(-2, -1)) * scale
    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    reference = (torch.softmax(s, dim=-1) @ vh).permute(0, 2, 1, 3)

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    sdpa = torch.nn.functional.scaled_dot_product_attention(
        *(x.to(dev).permute(0, 2, 1, 3) for x in (q, k, v)), is_causal=True, scale=scale
    ).permute(0, 2, 1, 3).double().cpu()

    rows = [
        (f"AttentionLab on {meta.get('device', '?')} vs Python float64 reference", (ours_device.double() - reference).abs().max().item(), True),
        ("AttentionLab on cpu vs Python float64 reference", (ours_cpu.double() - reference).abs().max().item(), True),
        (f"Python SDPA float32 on {dev} vs Python float64 reference", (sdpa - reference).abs().max().item(), False),
        (f"AttentionLab on {meta.get('device', '?')} vs Python SDPA on {dev}", (ours_device.double() - sdpa).abs().max().item(), False),
    ]
    tolerance = 1e-4
    failed = False
    print(f"torch {torch.__version__} · case B={b} T={t} H={h} D={d} causal · tolerance {tolerance:g} (checked rows)")
    for what, diff, checked in rows:
        bad = checked and not diff <= tolerance
        failed |= bad
        print(f"  {'FAIL' if bad else 'ok  '}  max|diff| {diff:.3e}  {what}")
    if out_csv:
        with open(out_csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["comparison", "max_abs_diff", "checked", "status"])
            for what, diff, checked in rows:
                w.writerow([what, f"{diff:.6g}", checked, "FAIL" if checked and not diff <= tolerance else "ok"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
