#!/usr/bin/python3
"""PyTorch reference for bench/run: the same presets, data and procedure as
bench/fv_bench.c `speed`, one thread.

  torch_ref.py --preset sae --data FILE [--epochs 3] [--batch 32] [--blas]

Per preset: build the model (nn.Linear layers with the preset's activations,
nn.Dropout where the preset has dropout, Gaussian input noise for the
denoising preset), Adam(lr=1e-3), `epochs` passes over the rows in a fresh
random order (torch.randperm) in mini-batches of `batch` (a last partial
batch too), MSE against the clean rows; then model.eval() and, under
torch.no_grad(), the score (mean squared error, as a Python float) of every
row one by one. Prints one JSON line per run with wall and CPU times.
`--blas` first prints which BLAS library torch has mapped (after a matmul)
and the BLAS lines of torch's build configuration. --preset and --data take
comma lists to run several presets in one process.

Runs with Debian's python3-torch under /usr/bin/python3 (the pyenv python on
PATH has no torch).
"""
import argparse
import json
import os
import time

import numpy as np
import torch

torch.set_num_threads(1)
torch.set_num_interop_threads(1)

# name: (hidden widths, hidden activation, output activation, dropout, noise)
PRESETS = {
    "ae8": ([4, 2, 4], "relu", "linear", 0.0, 0.0),
    "ae20": ([12, 6, 12], "relu", "sigmoid", 0.0, 0.0),
    "dae128": ([16], "tanh", "linear", 0.2, 0.1),
    "sae": ([64, 32, 16, 32, 64], "relu", "linear", 0.0, 0.0),
}
NOMINAL = {"ae8": 8, "ae20": 20, "dae128": 128, "sae": 128, "conv1d": 128}
# The temporal preset (lib/nn/conv1d.c) on rows of 32 steps x 4 channels,
# time-major: filters 32, 16, kernel 7, stride 2, mirrored by transposed
# convolutions, then a kernel-7 convolution back to the channels.
CONV1D_STEPS, CONV1D_CHANNELS = 32, 4


def act(name):
    return {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh,
            "sigmoid": torch.nn.Sigmoid}[name]()


def build_conv1d():
    C, K, P = CONV1D_CHANNELS, 7, 3
    return torch.nn.Sequential(
        torch.nn.Conv1d(C, 32, K, stride=2, padding=P), torch.nn.ReLU(),
        torch.nn.Conv1d(32, 16, K, stride=2, padding=P), torch.nn.ReLU(),
        torch.nn.ConvTranspose1d(16, 16, K, stride=2, padding=P, output_padding=1),
        torch.nn.ReLU(),
        torch.nn.ConvTranspose1d(16, 32, K, stride=2, padding=P, output_padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv1d(32, C, K, stride=1, padding=P))


def build(preset, width):
    if preset == "conv1d":
        return build_conv1d()
    hidden, hact, oact, p, _ = PRESETS[preset]
    sizes = [width] + hidden + [width]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        last = i == len(sizes) - 2
        if not last:
            layers.append(act(hact))
            if p > 0:
                layers.append(torch.nn.Dropout(p))
        elif oact != "linear":
            layers.append(act(oact))
    return torch.nn.Sequential(*layers)


def blas_report():
    a = torch.randn(64, 64)
    (a @ a).sum().item()  # make sure the BLAS is loaded
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if "blas" in path.lower() or "lapack" in path.lower():
                libs.add(os.path.realpath(path))
    cfg = torch.__config__.show()
    info = [l.strip() for l in cfg.splitlines() if "BLAS" in l or "CPU capability" in l]
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "blas_libraries_mapped": sorted(libs),
                      "config": info}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset")
    ap.add_argument("--data")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--blas", action="store_true")
    a = ap.parse_args()
    if a.blas:
        blas_report()
    if not a.preset:
        return
    # "--preset a,b --data x8.bin,x128.bin": several in one process (the
    # smoke test pays torch's import once).
    for preset, data in zip(a.preset.split(","), a.data.split(",")):
        run(preset, data, a.epochs, a.batch)


def run(preset, data, epochs, batch):
    width = NOMINAL[preset]
    X = torch.from_numpy(np.fromfile(data, dtype="<f4").reshape(-1, width).copy())
    if preset == "conv1d":
        # Rows are (steps, channels); torch's Conv1d wants (channels,
        # steps). Transposed once here, outside the timed parts: the most
        # favourable layout for torch (the loss is the same sum).
        X = X.reshape(-1, CONV1D_STEPS, CONV1D_CHANNELS).transpose(1, 2).contiguous()
    N = X.shape[0]
    torch.manual_seed(1)
    model = build(preset, width)
    noise = PRESETS[preset][4] if preset in PRESETS else 0.0
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    mse = torch.nn.MSELoss()

    model.train()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        perm = torch.randperm(N)
        total = 0.0
        for s in range(0, N, batch):
            xb = X[perm[s:s + batch]]
            inp = xb + noise * torch.randn_like(xb) if noise > 0 else xb
            opt.zero_grad()
            loss = mse(model(inp), xb)
            loss.backward()
            opt.step()
            total += loss.item() * xb.shape[0]
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0

    model.eval()
    acc = 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for i in range(N):
            x = X[i:i + 1]
            acc += ((model(x) - x) ** 2).mean().item()
    score_s, score_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"preset": preset, "n": N, "train_s": train_s, "train_cpu_s": train_cpu,
                      "score_s": score_s, "score_cpu_s": score_cpu,
                      "loss": total / N, "mean_score": acc / N,
                      "params": sum(p.numel() for p in model.parameters())}), flush=True)


if __name__ == "__main__":
    main()
