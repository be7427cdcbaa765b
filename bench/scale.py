#!/usr/bin/env python3
"""The scale benchmark (docs/federation.md, "Scale"): rounds of a real
fedvigil-coordinator with N agents of fedvigil-swarm, against the transport
limit of the same bytes through the same Mosquitto.

For each preset and N: a private Mosquitto with deploy/mosquitto/limits.conf,
the coordinator (the preset, fp32 updates unless --encoding, one local
epoch), and the swarm in --burst mode (every selected agent trains, then all
publish at once: N devices finishing together). Per training round the
swarm reports (monotonic ms):

  round_ms      announcement seen -> every agent holds the new model
  compute_ms    announcement -> burst released (the swarm trains N agents
                on 2 shared cores here; on a fleet each device trains its
                own, in parallel)
  transport_ms  burst released -> every agent holds the new model: N updates
                to the coordinator, its decode and aggregation, persisting
                the state, and the model fanned out to N agents

Then `fedvigil-swarm --raw` sends the same bytes through the same broker
with nothing else in the way: N clients publishing one update-sized QoS 1
message each to one subscriber (up), and one model-sized message fanned out
to the N clients (down). raw_ms = median(up) + median(down), and
ratio = median(transport_ms) / raw_ms. The target: ratio <= 1.5 at N=1000.
The same again with the subscriber a Paho client (--raw-sink paho, the
coordinator's MQTT library) gives raw_paho_ms and ratio_paho: what is left
of the round's transport time once Paho's own cost is taken out.

Prints a table and one line per (preset, N):
  scale: preset=<p> agents=<n> transport_ms=<t> raw_ms=<r> ratio=<x> ...
Not a test: the ratios are measured in the same run, on whatever else the
machine is doing; the load average is printed with them.
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PRESETS = {
    # preset: (window, stride) for the swarm's 5 channels
    "ae8": (1, 1),      # 8 inputs published; 5 here
    "ae20": (4, 2),     # 20 inputs: the published 20-12-6-12-20 exactly
    "dae128": (25, 5),  # 125 inputs (128 published)
    "sae": (25, 5),     # 125 inputs (128 published)
}


def free_port():
    for _ in range(200):
        p = random.randint(20000, 60000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue
    raise SystemExit("scale: no free port")


def wait_port(port, proc, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit("scale: mosquitto exited at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("scale: mosquitto did not come up")


def proc_usage(pid):
    """(peak RSS bytes, CPU seconds) of a running process."""
    hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tck
    return hwm, cpu


def stop(proc, grace=5.0):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run_one(a, preset, n, work):
    d = os.path.join(work, f"{preset}-{n}")
    os.makedirs(d)
    port = free_port()
    conf = os.path.join(d, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        with open(os.path.join(a.source, "deploy/mosquitto/limits.conf")) as lim:
            f.write(lim.read())
    win, stride = PRESETS[preset]
    ini = os.path.join(d, "coordinator.ini")
    with open(ini, "w") as f:
        f.write(f"""[coordinator]
fleet = scale
broker = tcp://127.0.0.1:{port}
state_dir = {d}/state
log_level = notice
[model]
preset = {preset}
window = {win}
stride = {stride}
channels = 5
[round]
rounds = {a.rounds + a.warmup}
min_agents = {n}
fraction = 1.0
deadline_ms = {int(a.deadline * 1000)}
interval_ms = 1000
epochs = 1
min_samples = 20
[compression]
encoding = {a.encoding}
""")
    load0 = loadavg()
    out = {"preset": preset, "agents": n, "load_start": load0}
    broker = coord = swarm = None
    logs = [open(os.path.join(d, x), "w") for x in ("mosquitto.log", "coordinator.log", "swarm.log")]
    try:
        broker = subprocess.Popen([a.mosquitto, "-c", conf], stdout=logs[0], stderr=logs[0])
        wait_port(port, broker)
        coord = subprocess.Popen([os.path.join(a.bin, "fedvigil-coordinator"), "-c", ini],
                                 stdout=logs[1], stderr=logs[1])
        rounds_file = os.path.join(d, "rounds.jsonl")
        swarm = subprocess.Popen([os.path.join(a.bin, "fedvigil-swarm"), "-b",
                                  f"tcp://127.0.0.1:{port}", "-F", "scale", "-n", str(n),
                                  "--burst", "--rounds", str(a.rounds + a.warmup),
                                  "--idle-timeout", str(a.deadline + 60), "-o", rounds_file,
                                  "--log-level", "info"],
                                 stdout=logs[2], stderr=logs[2])
        t0 = time.time()
        out["swarm_peak_rss"] = 0
        while swarm.poll() is None:
            try:
                out["swarm_peak_rss"] = max(out["swarm_peak_rss"], proc_usage(swarm.pid)[0])
            except (OSError, IndexError):
                pass  # it just exited
            if time.time() - t0 > a.timeout:
                raise SystemExit(f"scale: {preset} N={n}: no result after {a.timeout} s")
            if coord.poll() is not None:
                raise SystemExit(f"scale: {preset} N={n}: the coordinator exited "
                                 f"(see {d}/coordinator.log)")
            time.sleep(0.2)
        if swarm.returncode != 0:
            raise SystemExit(f"scale: {preset} N={n}: fedvigil-swarm failed "
                             f"(see {d}/swarm.log)")
        out["coord_peak_rss"], out["coord_cpu"] = proc_usage(coord.pid)
        stop(coord)
        coord = None
        rounds = [json.loads(x) for x in open(rounds_file)]
        train = [r for r in rounds if r["kind"] == "train" and r["result"] == "closed"]
        train = train[a.warmup:]
        if not train:
            raise SystemExit(f"scale: {preset} N={n}: no training round closed")
        for r in train:
            if r["aggregated"] != n:
                print(f"scale: warning: {preset} N={n} round {r['round']}: "
                      f"{r['aggregated']:.0f} of {n} updates aggregated", file=sys.stderr)
        out["rounds"] = train
        upd = int(train[-1]["coord_update_bytes"] / max(train[-1]["aggregated"], 1))
        model = int(train[-1]["model_bytes"])
        out["update_bytes"], out["model_bytes"] = upd, model
        raw = subprocess.run([os.path.join(a.bin, "fedvigil-swarm"), "-b",
                              f"tcp://127.0.0.1:{port}", "-F", "scale", "-n", str(n), "--raw",
                              "--update-bytes", str(upd), "--model-bytes", str(model),
                              "--reps", str(a.reps)],
                             capture_output=True, text=True, timeout=a.timeout)
        if raw.returncode != 0:
            raise SystemExit(f"scale: {preset} N={n}: --raw failed: {raw.stderr[-2000:]}")
        out["raw"] = json.loads(raw.stdout.strip().splitlines()[-1])
        # The same with the sink a Paho client, as the coordinator's is:
        # what the coordinator's MQTT library can take in at best.
        raw = subprocess.run(raw.args + ["--raw-sink", "paho"], capture_output=True, text=True,
                             timeout=a.timeout)
        if raw.returncode != 0:
            raise SystemExit(f"scale: {preset} N={n}: --raw-sink paho failed: "
                             f"{raw.stderr[-2000:]}")
        out["raw_paho"] = json.loads(raw.stdout.strip().splitlines()[-1])
    finally:
        stop(swarm)
        stop(coord)
        stop(broker)
        for f in logs:
            f.close()
    out["load_end"] = loadavg()
    med = lambda k: statistics.median(r[k] for r in out["rounds"])
    out["round_ms"] = med("round_ms")
    out["compute_ms"] = med("compute_ms")
    out["transport_ms"] = med("transport_ms")
    out["collect_ms"] = med("collect_ms")
    out["sync_ms"] = med("sync_ms")
    out["coord_round_ms"] = med("coord_duration_ms")
    out["raw_ms"] = out["raw"]["up_median_ms"] + out["raw"]["down_median_ms"]
    out["ratio"] = out["transport_ms"] / max(out["raw_ms"], 1)
    out["raw_paho_ms"] = out["raw_paho"]["up_median_ms"] + out["raw_paho"]["down_median_ms"]
    out["ratio_paho"] = out["transport_ms"] / max(out["raw_paho_ms"], 1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="directory with the built programs")
    ap.add_argument("--source", required=True, help="the checkout (deploy/mosquitto/limits.conf)")
    ap.add_argument("--presets", default="ae20,sae")
    ap.add_argument("--agents", default="10,100,1000")
    ap.add_argument("--rounds", type=int, default=5, help="training rounds measured")
    ap.add_argument("--warmup", type=int, default=1, help="training rounds not counted")
    ap.add_argument("--reps", type=int, default=7, help="--raw repetitions")
    ap.add_argument("--encoding", default="fp32", help="[compression] encoding")
    ap.add_argument("--deadline", type=float, default=300, help="round deadline, s")
    ap.add_argument("--timeout", type=float, default=1800, help="per (preset, N), s")
    ap.add_argument("--json", help="write every result here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    a.mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    work = tempfile.mkdtemp(prefix="fedvigil-scale.")
    results = []
    try:
        for preset in a.presets.split(","):
            if preset not in PRESETS:
                raise SystemExit(f"scale: unknown preset {preset}")
            for n in (int(x) for x in a.agents.split(",")):
                print(f"scale: {preset} N={n} ...", file=sys.stderr, flush=True)
                results.append(run_one(a, preset, n, work))
    finally:
        if a.keep:
            print(f"scale: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    print(f"{'preset':7} {'N':>5} {'update':>8} {'model':>8} {'round':>7} {'compute':>8} "
          f"{'transport':>9} {'raw up+down':>12} {'ratio':>6} {'paho up+down':>12} {'ratio':>6} "
          f"{'coord RSS':>10} "
          f"{'coord CPU':>10} {'load':>10}")
    for r in results:
        cpu_round = r["coord_cpu"] / (len(r["rounds"]) + a.warmup + 1)
        print(f"{r['preset']:7} {r['agents']:5d} {r['update_bytes']:8d} {r['model_bytes']:8d} "
              f"{r['round_ms']:7.0f} {r['compute_ms']:8.0f} {r['transport_ms']:9.0f} "
              f"{r['raw']['up_median_ms']:5.0f}+{r['raw']['down_median_ms']:<6.0f} "
              f"{r['ratio']:6.2f} "
              f"{r['raw_paho']['up_median_ms']:6.0f}+{r['raw_paho']['down_median_ms']:<5.0f} "
              f"{r['ratio_paho']:6.2f} {r['coord_peak_rss'] / 2**20:8.1f}MB "
              f"{cpu_round:8.2f} s {r['load_start']:4.1f}-{r['load_end']:<4.1f}")
    print("(ms, medians over rounds; coord CPU per round; load = 1-min load average at start-end)")
    for r in results:
        target = "" if r["agents"] < 1000 else (" target<=1.5 " +
                                                 ("met" if r["ratio"] <= 1.5 else "NOT met"))
        print(f"scale: preset={r['preset']} agents={r['agents']} "
              f"transport_ms={r['transport_ms']:.0f} raw_ms={r['raw_ms']:.0f} "
              f"ratio={r['ratio']:.2f} raw_paho_ms={r['raw_paho_ms']:.0f} "
              f"ratio_paho={r['ratio_paho']:.2f} round_ms={r['round_ms']:.0f} "
              f"coord_rss_mb={r['coord_peak_rss'] / 2**20:.1f} "
              f"coord_cpu_s={r['coord_cpu']:.2f} swarm_rss_mb={r['swarm_peak_rss'] / 2**20:.1f} "
              f"load={r['load_start']:.1f}{target}")


if __name__ == "__main__":
    main()
