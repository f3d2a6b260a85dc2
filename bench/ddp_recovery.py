"""Recovery rate of `ofakit train` under `torchrun --max-restarts`: how often a two-process run (gloo on 127.0.0.1)
in which one worker is killed with SIGKILL finishes, and finishes with the weights of an uninterrupted run.

Each run kills one worker once (its rank and step drawn from `--seed`, anywhere in the run) in torchrun's first
attempt; torchrun restarts both, and they resume from rank 0's last checkpoint. A run that does not end within
`--timeout` seconds counts as hung. It prints one JSON line:

    python bench/ddp_recovery.py --runs 10 --out runs/ddp-recovery

The script is also its own torchrun worker (`--worker`).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPE = {
    "space": "tiny", "data": "digits", "seed": 1, "batch_size": 16, "base_batch_size": 32, "checkpoint_every": 2,
    "eval_batch_size": 128, "eval_max_batches": 1, "recalibration_batches": 1, "eval_random_subnets": 0,
    "stages": [
        {"name": "full", "sampler": "largest", "epochs": 1, "lr": 0.1, "max_steps": 4},
        {"name": "kernel", "epochs": 1, "lr": 0.05, "kernel": [5, 7], "expand": [4], "depth": [2], "kd_weight": 1.0,
         "max_steps": 4},
    ],
}
STEPS = 8


def worker(recipe: str, out: str, weights: Path, kill_rank: int, kill_step: int) -> None:
    import torch
    from safetensors.torch import save_file

    from ofakit.train.config import load_recipe
    from ofakit.train.loop import train

    rank = int(os.environ["RANK"])
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"

    def on_step(step: int) -> None:
        if first_attempt and rank == kill_rank and step == kill_step:
            os.kill(os.getpid(), signal.SIGKILL)

    torch.set_num_threads(1)
    result = train(load_recipe(recipe), out, progress=False, on_step=on_step, join_timeout=60)
    weights.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in result.supernet.state_dict().items()},
              str(weights / f"rank{rank}.safetensors"))


def launch(recipe: Path, run: Path, *, restarts: int, kill: tuple[int, int],
           timeout: float) -> tuple[int | None, float]:
    """(torchrun's exit code or None when it hung, seconds)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           f"--max-restarts={restarts}", __file__, "--worker", str(recipe), str(run / "run"), str(run / "weights"),
           str(kill[0]), str(kill[1])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(run / "stderr.txt", "w"),
                            start_new_session=True)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        code = None
    return code, time.perf_counter() - start


def same_weights(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--max-restarts", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a run counts as hung")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    args = parser.parse_args()
    import yaml

    root = args.out or Path(tempfile.mkdtemp(prefix="ddp-recovery-"))
    root.mkdir(parents=True, exist_ok=True)
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    (root / "reference").mkdir(exist_ok=True)
    code, _ = launch(recipe, root / "reference", restarts=0, kill=(-1, -1), timeout=args.timeout)
    if code != 0:
        sys.exit(f"the uninterrupted reference run failed (exit {code}); see {root / 'reference' / 'stderr.txt'}")
    reference = root / "reference" / "weights" / "rank0.safetensors"
    rng = random.Random(args.seed)
    runs = []
    for i in range(args.runs):
        kill = (rng.randrange(2), rng.randrange(1, STEPS))
        run = root / f"run{i:02d}"
        run.mkdir(exist_ok=True)
        code, seconds = launch(recipe, run, restarts=args.max_restarts, kill=kill, timeout=args.timeout)
        equal = code == 0 and all(same_weights(run / "weights" / f"rank{r}.safetensors", reference) for r in (0, 1))
        record = json.loads((run / "run" / "run.json").read_text()) if (run / "run" / "run.json").is_file() else {}
        runs.append({"kill_rank": kill[0], "kill_step": kill[1], "exit": code, "seconds": round(seconds, 1),
                     "bitwise_equal": equal, "resumes": len(record.get("resumes", []))})
    print(json.dumps({
        "bench": "ddp_recovery", "date": time.strftime("%Y-%m-%d"), "runs": len(runs),
        "max_restarts": args.max_restarts, "recovered": sum(r["exit"] == 0 for r in runs),
        "bitwise_equal": sum(r["bitwise_equal"] for r in runs), "hung": sum(r["exit"] is None for r in runs),
        "median_seconds": statistics.median(r["seconds"] for r in runs), "load_avg": os.getloadavg()[0],
        "detail": runs,
    }))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        main()
