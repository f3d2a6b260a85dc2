"""Training under torchrun on CPU (gloo over 127.0.0.1): two processes end with identical weights and clean logs (on
one node or two nodes alike), a worker killed with SIGKILL is restarted to the very same weights, a run resumed on
another number of processes is refused, node-local run directories and unreachable peers stop every process with one
line. Every launch has a hard timeout; DDP's handling of unused parameters and of gradient strides is checked in one
process."""
from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from ofakit.bundle import load_bundle
from ofakit.space import get_space
from ofakit.supernet import build_supernet
from ofakit.train.config import recipe_from_dict
from ofakit.train.distributed import Processes, match_grad_strides, unused_parameters
from ofakit.train.loop import train

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")
LAUNCH_TIMEOUT = 240  # seconds for one torchrun launch (a restart included) before the test fails

RECIPE = {
    "space": "tiny", "data": "digits", "seed": 1, "batch_size": 16, "base_batch_size": 32, "checkpoint_every": 2,
    "eval_batch_size": 128, "eval_max_batches": 1, "recalibration_batches": 1, "eval_random_subnets": 0,
    "stages": [
        {"name": "full", "sampler": "largest", "epochs": 1, "lr": 0.1, "max_steps": 4},
        {"name": "kernel", "epochs": 1, "lr": 0.05, "kernel": [3, 5], "expand": [4], "depth": [2],
         "kd_weight": 1.0, "max_steps": 4},
    ],
}  # kernels 3/5: a step leaves a block's 5-to-3 transform unused unless every block draws 3, as global step 5 (the
# kernel stage's second, seed 1) does; DDP's C++ warning about a step that used every parameter must not appear


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str, launcher: tuple[str, ...] = ("--standalone", "--nproc_per_node=2")) \
        -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", *launcher, *args]
    try:
        return subprocess.run(cmd, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"torchrun did not end within {LAUNCH_TIMEOUT} s: {' '.join(cmd)}\n{exc.stderr}")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _ofakit_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ofakit: error: ")]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "r.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, recipe) -> Path:
    """An uninterrupted two-process run (torchrun --standalone --nproc_per_node=2): RUN/run and RUN/weights."""
    root = tmp_path_factory.mktemp("reference")
    done = _torchrun(str(WORKER), str(recipe), str(root / "run"), "--weights", str(root / "weights"))
    assert done.returncode == 0, done.stderr
    (root / "stderr.txt").write_text(done.stderr)
    return root


@pytest.mark.slow
def test_two_processes_end_with_identical_weights_and_clean_logs(reference, cli, recipe):
    rank0, rank1 = (_weights(reference / "weights" / f"rank{r}.safetensors") for r in (0, 1))
    assert _equal(rank0, rank1)
    assert _equal(rank0, _weights(reference / "run" / "bundle" / "supernet.safetensors"))
    last = sorted((reference / "run" / "checkpoints").iterdir())[-1]
    assert _equal(rank0, _weights(last / "model.safetensors"))  # rank 0's last checkpoint is the final state
    assert load_bundle(reference / "run" / "bundle")[1].training["world_size"] == 2
    log = (reference / "stderr.txt").read_text()
    assert "Grad strides do not match" not in log and "find_unused_parameters" not in log, log
    # the finished run, re-run with one process: "already finished", nothing touched
    before = {p: p.read_bytes() for p in sorted((reference / "run").rglob("*")) if p.is_file()}
    result = cli("train", "--recipe", recipe, "--out", reference / "run", "--quiet")
    assert result.code == 0 and "is already finished; nothing was trained or written" in result.err, result.err
    assert {p: p.read_bytes() for p in sorted((reference / "run").rglob("*")) if p.is_file()} == before


@pytest.mark.slow
def test_a_killed_worker_is_restarted_to_the_same_weights(reference, recipe, tmp_path):
    # rank 1 dies (SIGKILL) after step 7, between the checkpoints of steps 6 and 8, in the middle of the distilled stage
    done = _torchrun("--max-restarts=2", str(WORKER), str(recipe), str(tmp_path / "run"), "--weights",
                     str(tmp_path / "weights"), "--kill-rank", "1", "--kill-step", "7",
                     launcher=("--standalone", "--nproc_per_node=2"))
    assert done.returncode == 0, done.stderr
    want = _weights(reference / "weights" / "rank0.safetensors")
    for rank in (0, 1):
        assert _equal(_weights(tmp_path / "weights" / f"rank{rank}.safetensors"), want), f"rank {rank} differs"
    resumes = json.loads((tmp_path / "run" / "run.json").read_text())["resumes"]
    assert [(r["world_size"], r["step"]) for r in resumes][:1] == [(2, 6)]


class _Stop(Exception):
    pass


def _stop_at(step: int):  # noqa: ANN202
    def hook(done: int) -> None:
        if done == step:
            raise _Stop
    return hook


@pytest.mark.slow
def test_a_resume_is_recorded_and_another_number_of_processes_is_refused(recipe, tmp_path):
    run = tmp_path / "run"
    cfg = recipe_from_dict(RECIPE)
    with pytest.raises(_Stop):
        train(cfg, run, progress=False, on_step=_stop_at(5))  # one process, stopped after step 5
    with pytest.raises(_Stop):
        train(cfg, run, progress=False, on_step=_stop_at(6))  # resumed at 4, stopped after 6's checkpoint
    record = json.loads((run / "run.json").read_text())
    assert record["world_size"] == 1 and [(r["world_size"], r["step"]) for r in record["resumes"]] == [(1, 4)]

    before = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    done = _torchrun("-m", "ofakit", "train", "--recipe", str(recipe), "--out", str(run), "--quiet")
    assert done.returncode != 0
    errors = _ofakit_errors(done.stderr)
    assert len(errors) == 2, done.stderr  # one line from each process
    assert all("was trained by 1 process(es) up to step 6, this run has 2" in e for e in errors), errors
    assert {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == before  # nothing skipped or written


def _two_nodes(*args_of_node: list[str]) -> list[tuple[int, str]]:
    """torchrun --nnodes=2 --nproc_per_node=1 on 127.0.0.1, one launch per node: [(exit code, stderr)]."""
    port = _free_port()
    launches = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", f"--node_rank={node}",
         "--master_addr=127.0.0.1", f"--master_port={port}", *args],
        env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for node, args in enumerate(args_of_node)]
    try:
        results = [p.communicate(timeout=LAUNCH_TIMEOUT)[1] for p in launches]
    except subprocess.TimeoutExpired:
        for p in launches:
            p.kill()
        pytest.fail(f"a two-node launch did not end within {LAUNCH_TIMEOUT} s")
    return [(p.returncode, err) for p, err in zip(launches, results)]


@pytest.mark.slow
def test_two_nodes_on_a_shared_run_directory_train_as_one_node(reference, recipe, tmp_path):
    args = [str(WORKER), str(recipe), str(tmp_path / "run"), "--weights", str(tmp_path / "weights")]
    for code, err in _two_nodes(args, args):
        assert code == 0, err
    want = _weights(reference / "weights" / "rank0.safetensors")  # the same ranks and shards as one node of two
    for rank in (0, 1):
        assert _equal(_weights(tmp_path / "weights" / f"rank{rank}.safetensors"), want), f"rank {rank} differs"


@pytest.mark.slow
def test_node_local_run_directories_stop_every_process_at_once(recipe, tmp_path):
    results = _two_nodes(*[["-m", "ofakit", "train", "--recipe", str(recipe), "--out", str(tmp_path / f"node{node}"),
                            "--quiet", "--join-timeout", "60"] for node in (0, 1)])
    for code, err in results:
        assert code != 0
        errors = _ofakit_errors(err)
        assert len(errors) == 1 and "is not shared by every process (rank 1 on" in errors[0], err
        assert "needs a run directory on a filesystem all nodes share" in errors[0]
    assert not (tmp_path / "node1").exists()  # no process but rank 0 writes
    assert not (tmp_path / "node0" / "checkpoints").exists()


def test_a_process_that_cannot_join_stops_with_one_line_in_time(recipe, tmp_path):
    env = {**_env(), "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port())}  # nobody listens there
    done = subprocess.run([sys.executable, "-m", "ofakit", "train", "--recipe", str(recipe), "--out",
                           str(tmp_path / "run"), "--quiet", "--join-timeout", "2"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith("ofakit: error: process 1 of 2 could not join the others at "
                                                   "127.0.0.1:"), done.stderr
    assert "it waits up to 2 s (--join-timeout)" in done.stderr and not (tmp_path / "run").exists()


def test_grads_take_their_parameters_strides():
    space = get_space("tiny")
    torch.manual_seed(0)
    net = build_supernet(space).to(memory_format=torch.channels_last)
    rng = random.Random(0)
    archs = [space.largest(), space.smallest(), space.sample(rng), space.sample(rng)]

    def mismatches() -> set[str]:
        names = set()
        for arch in archs:
            net.set_active(arch)
            x = torch.randn(2, 3, arch.resolution, arch.resolution).contiguous(memory_format=torch.channels_last)
            net(x).sum().backward()
            names |= {n for n, p in net.named_parameters() if p.grad is not None and p.grad.stride() != p.stride()}
            net.zero_grad(set_to_none=True)
        return names

    assert mismatches()  # 1x1 and depthwise conv weights: what DDP warned about
    match_grad_strides(net)
    assert mismatches() == set()


def test_unused_parameters_changes_nothing():
    space = get_space("tiny")
    net = build_supernet(space).to(memory_format=torch.channels_last).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng_state = torch.get_rng_state()
    cpu = torch.device("cpu")
    unused = unused_parameters(net, [space.largest()], cpu, torch.channels_last)
    assert unused and all("transform" in name for name in unused)  # the largest kernel needs no transform
    assert unused_parameters(net, [space.largest(), space.smallest()], cpu, torch.channels_last) != unused
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng_state) and net.training
    assert all(p.grad is None for p in net.parameters())


def test_one_process_needs_no_group(tmp_path):
    single = Processes()
    assert single.on_main(lambda: 7) == 7
    single.check_shared(tmp_path)  # nothing to check, nothing written
    assert list(tmp_path.iterdir()) == []
