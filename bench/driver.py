#!/usr/bin/python3
"""bench/run's driver: runs fv-bench and torch_ref.py back to back, repeats,
and prints the table and the per-preset result lines (docs/bench.md).
Standard library only; torch is imported by torch_ref.py alone."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PRESETS = ["ae8", "ae20", "dae128", "sae", "conv1d"]
WIDTH = {"ae8": 8, "ae20": 20, "dae128": 128, "sae": 128, "conv1d": 128}  # conv1d: 32 x 4
# Targets of issue #4 (ratios to PyTorch, 1 thread, x86-64); none for the
# temporal model.
TARGET = {"ae8": (60, 100), "ae20": (25, 60), "dae128": (4, 25), "sae": (4, 25),
          "conv1d": (None, None)}
# bench/agent_rss.sh: the simulator's 5 channels, windows of whole vectors
# nearest the preset's width (dae128, sae: 25 x 5 = 125 inputs).
AGENT_WINDOW = {"ae8": 2, "ae20": 4, "dae128": 25, "sae": 25, "conv1d": 32}
PEAK_GFLOPS = 83.0  # AMD EPYC core: 2 FMA x 8 lanes x 2 flops x 2.6 GHz
RSS_TARGET_MB = 10.0
TORCH_PY = "/usr/bin/python3"


def target(p, i):
    return f">= {TARGET[p][i]}" if TARGET[p][i] is not None else "-"


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="fv-bench binary")
    ap.add_argument("--bin-dir", required=True, help="build dir with the daemons")
    ap.add_argument("--n", type=int, default=65536)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--quality-samples", type=int, default=20000)
    ap.add_argument("--rss-windows", type=int, default=4096)
    ap.add_argument("--no-agent", action="store_true",
                    help="skip the real-agent RSS runs (rss_mb is then fv-bench rss's peak)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--torch-once", action="store_true",
                    help="one PyTorch process for every preset (smoke test: one import)")
    a = ap.parse_args()
    presets = a.presets.split(",")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")

    print(f"bench: load average before: {loadavg()} ({os.cpu_count()} CPUs)")
    torch_ok = not a.no_torch
    tmp = tempfile.mkdtemp(prefix="fv-bench.")
    data = {}
    for w in sorted({WIDTH[p] for p in presets}):
        data[w] = os.path.join(tmp, f"x{w}.bin")
        subprocess.run([a.bin, "data", "--width", str(w), "--n", str(a.n), "--seed", "1",
                        "--out", data[w]], check=True)
    once = {}
    if torch_ok:
        try:
            cmd = [TORCH_PY, os.path.join(HERE, "torch_ref.py"), "--blas"]
            if a.torch_once:
                cmd += ["--preset", ",".join(presets), "--data",
                        ",".join(data[WIDTH[p]] for p in presets), "--epochs", str(a.epochs)]
            out = run_json(cmd, env)
            blas = out[0]
            once = {t["preset"]: t for t in out[1:]}
            print(f"bench: torch {blas['torch']}, {blas['threads']} thread(s), BLAS mapped: "
                  + ", ".join(blas["blas_libraries_mapped"]))
            for line in blas["config"]:
                if "BLAS_INFO" in line:
                    print("bench: torch build: " +
                          ", ".join(p.strip() for p in line.split(",") if "BLAS" in p))
        except (subprocess.CalledProcessError, FileNotFoundError, IndexError) as e:
            print(f"bench: PyTorch unavailable ({e}); ratios are not measured")
            torch_ok = False

    res = {}
    for p in presets:
        runs = []
        for r in range(a.repeat):
            c = run_json([a.bin, "speed", "--preset", p, "--data", data[WIDTH[p]],
                          "--epochs", str(a.epochs)], env)[0]
            t = once.get(p)
            if torch_ok and not t:
                t = run_json([TORCH_PY, os.path.join(HERE, "torch_ref.py"), "--preset", p,
                              "--data", data[WIDTH[p]], "--epochs", str(a.epochs)], env)[0]
            runs.append((c, t))
            print(f"bench: {p} run {r + 1}/{a.repeat}: C train {c['train_cpu_s']:.3f} s "
                  f"score {c['score_cpu_s']:.3f} s" +
                  (f"; torch train {t['train_cpu_s']:.3f} s score {t['score_cpu_s']:.3f} s"
                   if t else "") + f" (CPU time; load {loadavg()})", flush=True)
        rss = run_json([a.bin, "rss", "--preset", p, "--windows", str(a.rss_windows),
                        "--epochs", str(a.epochs)], env)[0]
        qual = run_json([a.bin, "quality", "--preset", p, "--samples",
                         str(a.quality_samples)], env)[0]
        agent = None
        if not a.no_agent:
            try:
                agent = run_json(["bash", os.path.join(HERE, "agent_rss.sh"), p,
                                  str(AGENT_WINDOW[p]), a.bin_dir], env)[0]
                print(f"bench: {p}: real fedvigil-agent ({agent['layers']}, "
                      f"{agent['windows']} windows): peak RSS {agent['hwm_kb'] / 1024:.2f} MB, "
                      f"{agent['hwm_before_round_kb'] / 1024:.2f} MB before its round", flush=True)
            except (subprocess.CalledProcessError, IndexError) as e:
                print(f"bench: {p}: real-agent RSS run failed: {e}")
        res[p] = (runs, rss, qual, agent)

    med = statistics.median
    print()
    print(f"bench: {a.n} samples x {a.epochs} epochs, batch 32, Adam lr 1e-3, then one-by-one "
          f"scoring of every sample; 1 thread; medians of {a.repeat} back-to-back runs; "
          "times are CPU times of each process (wall in brackets); ratio = PyTorch / fedvigil")
    hdr = ("preset", "layers", "params", "C train s", "torch train s", "train x", "target",
           "C score s", "torch score s", "score x", "target", "train GF/s", "GEMM GF/s",
           "% peak", "trainer KiB", "scorer KiB", "lib RSS MB", "agent RSS MB", "AUC", "F1")
    rows = []
    lines = []
    for p in presets:
        runs, rss, qual, agent = res[p]
        c0 = runs[0][0]
        ct = med(r[0]["train_cpu_s"] for r in runs)
        cs = med(r[0]["score_cpu_s"] for r in runs)
        ctw = med(r[0]["train_s"] for r in runs)
        csw = med(r[0]["score_s"] for r in runs)
        gf = med(r[0]["train_gflops"] for r in runs)
        gg = med(r[0]["gemm_gflops"] for r in runs)
        if torch_ok:
            tt = med(r[1]["train_cpu_s"] for r in runs)
            ts = med(r[1]["score_cpu_s"] for r in runs)
            ttw = med(r[1]["train_s"] for r in runs)
            tsw = med(r[1]["score_s"] for r in runs)
            tr = med(r[1]["train_cpu_s"] / r[0]["train_cpu_s"] for r in runs)
            sr = med(r[1]["score_cpu_s"] / r[0]["score_cpu_s"] for r in runs)
            trw = med(r[1]["train_s"] / r[0]["train_s"] for r in runs)
            srw = med(r[1]["score_s"] / r[0]["score_s"] for r in runs)
        lib_mb = rss["hwm_kb"] / 1024.0
        rss_mb = agent["hwm_kb"] / 1024.0 if agent else lib_mb
        rows.append((p, c0["layers"], str(c0["params"]), f"{ct:.3f} [{ctw:.3f}]",
                     f"{tt:.2f} [{ttw:.2f}]" if torch_ok else "-",
                     f"{tr:.1f} [{trw:.1f}]" if torch_ok else "-", target(p, 0),
                     f"{cs:.3f} [{csw:.3f}]", f"{ts:.2f} [{tsw:.2f}]" if torch_ok else "-",
                     f"{sr:.1f} [{srw:.1f}]" if torch_ok else "-", target(p, 1),
                     f"{gf:.1f}", f"{gg:.1f}" if gg else "-",
                     f"{100 * gg / PEAK_GFLOPS:.0f}%" if gg else "-",
                     f"{c0['trainer_bytes'] / 1024:.1f}", f"{c0['scorer_bytes'] / 1024:.1f}",
                     f"{lib_mb:.2f}", f"{rss_mb:.2f}" if agent else "-",
                     f"{qual['roc_auc']:.3f}", f"{qual['f1']:.3f}"))
        if torch_ok:
            lines.append(f"preset={p} train_ratio={tr:.1f} score_ratio={sr:.1f} "
                         f"rss_mb={rss_mb:.2f}")
        else:
            lines.append(f"preset={p} train_ratio=nan score_ratio=nan rss_mb={rss_mb:.2f}")
        res[p] = res[p] + ((tr, sr) if torch_ok else (None, None), rss_mb)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(hdr)]
    print(" | ".join(h.ljust(w) for h, w in zip(hdr, widths)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(v.ljust(w) for v, w in zip(r, widths)))
    print()
    print("bench: GEMM GF/s = the kernels alone on one training step's GEMM shapes (batch 32);"
          f" train GF/s = training FLOPs / training CPU time; peak {PEAK_GFLOPS:.0f} GFLOP/s "
          "(fp32 FMA, one core)")
    print(f"bench: lib RSS MB = peak RSS (VmHWM) of a separate fv-bench process doing an "
          f"agent's training round with lib/nn only ({a.rss_windows} windows in memory, scorer "
          "+ histogram, trainer at batch 32, 3 epochs); agent RSS MB = peak RSS of a real "
          "fedvigil-agent through its first training round of the preset (bench/agent_rss.sh: "
          "private broker, coordinator, simulator; 4096 buffered vectors of 5 channels, "
          "windows of " + ", ".join(f"{p} {AGENT_WINDOW[p]}" for p in presets) + " vectors). "
          f"rss_mb below is the agent's{' (not run: the lib number)' if a.no_agent else ''}; "
          f"target <= {RSS_TARGET_MB:.0f} MB")
    q0 = res[presets[0]][2]
    print(f"bench: AUC/F1 = plant simulator (tools/sim), 3 machines x {a.quality_samples} "
          "samples, 6 faults each in the second half; trained 10 epochs on the first half; "
          "F1 at the 99.5th percentile of the training scores; windows of whole 5-channel "
          f"vectors nearest the preset's width (e.g. {q0['layers']})")
    print(f"bench: load average after: {loadavg()}")
    for p in presets:
        (tr, sr), rss_mb = res[p][4], res[p][5]
        if tr is None:
            continue
        if TARGET[p][0] is None:
            print(f"bench: {p}: train {tr:.1f}x, score {sr:.1f}x (no target), RSS "
                  f"{rss_mb:.2f} MB ({'met' if rss_mb <= RSS_TARGET_MB else 'NOT met'})")
            continue
        ok = (tr >= TARGET[p][0], sr >= TARGET[p][1], rss_mb <= RSS_TARGET_MB)
        print(f"bench: {p}: train {tr:.1f}x (target {TARGET[p][0]}x: "
              f"{'met' if ok[0] else 'NOT met'}), score {sr:.1f}x (target {TARGET[p][1]}x: "
              f"{'met' if ok[1] else 'NOT met'}), RSS {rss_mb:.2f} MB "
              f"({'met' if ok[2] else 'NOT met'})")
    for l in lines:
        print(l)
    for f in data.values():
        os.unlink(f)
    os.rmdir(tmp)
    return 0 if torch_ok else 77


if __name__ == "__main__":
    sys.exit(main())
