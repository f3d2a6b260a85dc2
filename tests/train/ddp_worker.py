"""A `torchrun` worker for the distributed tests: trains a recipe through `ofakit.train.loop.train`, saves this
process's final weights as WEIGHTS/rank<R>.safetensors, and can kill itself (SIGKILL) once, in the first attempt
only, after one step on one rank, so that torchrun's --max-restarts has something to restart."""
from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import torch
from safetensors.torch import save_file

from ofakit.train.config import load_recipe
from ofakit.train.loop import train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("recipe")
    parser.add_argument("out")
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--kill-rank", type=int)
    parser.add_argument("--kill-step", type=int)
    args = parser.parse_args()
    rank = int(os.environ["RANK"])
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"

    def on_step(step: int) -> None:
        if first_attempt and rank == args.kill_rank and step == args.kill_step:
            os.kill(os.getpid(), signal.SIGKILL)

    torch.set_num_threads(1)
    result = train(load_recipe(args.recipe), args.out, progress=False, on_step=on_step, join_timeout=60)
    args.weights.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in result.supernet.state_dict().items()},
              str(args.weights / f"rank{rank}.safetensors"))


if __name__ == "__main__":
    main()
