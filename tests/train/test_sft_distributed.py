"""`alignkit sft` on two CPU processes (gloo) trains like one process with the same global
batch, and only rank 0 writes the run directory (checkpoints, metrics, manifest, model).

2 processes x micro-batch 8 x grad_accum 1 vs 1 process x micro-batch 8 x grad_accum 2: every
optimizer step sees the same 16 examples, so the per-step losses must agree up to float
reordering in the all-reduce (tolerance: 1e-5 relative).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent('''
    import json, os, sys
    out, record, grad_accum = os.path.abspath(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    writes = []

    def audit(event, args):
        if event == "open" and args[1] is not None and any(c in str(args[1]) for c in "wax+"):
            path = args[0]
        elif event in ("os.rename", "os.replace", "os.mkdir"):
            path = args[0]
        else:
            return
        if isinstance(path, (str, os.PathLike)):
            p = os.path.abspath(os.fspath(path))
            if p == out or p.startswith(out + os.sep):
                writes.append(os.path.relpath(p, out))

    sys.addaudithook(audit)
    import torch
    torch.set_num_threads(1)
    from alignkit.train.config import OptimConfig, TrainConfig
    from alignkit.train.sft import SFTConfig, sft
    from alignkit.world.build import WorldConfig

    world = WorldConfig(corpus_passes=1, sft_per_family=8, heldout_per_family=1, n_people=16)
    sft(SFTConfig(model="builtin:world-tiny", world=world, heldout_eval=False, val_fraction=0,
                  train=TrainConfig(max_steps=4, micro_batch_size=8, grad_accum=grad_accum,
                                    save_every=2, progress=False,
                                    optim=OptimConfig(lr=1e-3))), out)
    rank = os.environ.get("RANK", "0")
    with open(f"{record}-rank{rank}.json", "w") as f:
        json.dump(writes, f)
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(script, out, record, grad_accum, env_extra):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **env_extra}
    return subprocess.Popen([sys.executable, str(script), str(out), str(record), str(grad_accum)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait(proc, timeout=400):
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"process timed out:\n{out.decode()[-3000:]}")
    assert proc.returncode == 0, out.decode()[-3000:]


def _losses(run_dir: Path) -> list[float]:
    return [json.loads(l)["loss"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_sft_on_two_processes_matches_one_and_only_rank0_writes(tmp_path):
    script = tmp_path / "run_sft.py"
    script.write_text(SCRIPT)
    single = _run(script, tmp_path / "one", tmp_path / "one", 2, {})
    _wait(single)
    port = str(_free_port())
    ranks = [_run(script, tmp_path / "ddp", tmp_path / "ddp", 1,
                  {"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}) for r in range(2)]
    for p in ranks:
        _wait(p)
    one, ddp = _losses(tmp_path / "one"), _losses(tmp_path / "ddp")
    assert len(one) == len(ddp) == 4
    for a, b in zip(one, ddp):
        assert b == pytest.approx(a, rel=1e-5)
    rank0 = json.loads((tmp_path / "ddp-rank0.json").read_text())
    rank1 = json.loads((tmp_path / "ddp-rank1.json").read_text())
    assert rank1 == []
    assert any(w.startswith("checkpoints") for w in rank0)
    assert any("manifest.json" in w for w in rank0)
    assert (tmp_path / "ddp" / "final" / "model.safetensors").is_file()
