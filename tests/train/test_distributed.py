"""Two CPU processes (gloo, through Accelerate) train like one process with the same global
batch, and only rank 0 writes to the run directory.

The two ranks are started directly with the torch.distributed environment variables
(RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) -- what torchrun would set; ``accelerate launch
--cpu`` only spawns several CPU processes through mpirun. ``Accelerator(cpu=True)`` picks the
variables up and runs DDP over gloo.

Setup: 8 micro-batches of 4 sequences with different numbers of trainable tokens.
2 processes x grad_accum 1 vs 1 process x grad_accum 2: each step sees the same two
micro-batches, so losses, grad norms and final weights must agree up to float reordering
(tolerance 1e-5 relative).
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
import torch

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent('''
    """argv: out_dir record_dir grad_accum. Records every write under out_dir, per rank."""
    import json, os, sys
    import torch
    import torch.nn.functional as F

    out_dir, record_dir, grad_accum = sys.argv[1], sys.argv[2], int(sys.argv[3])
    OUT = os.path.abspath(out_dir)
    writes = []

    def audit(event, args):
        # Every way a process can create/modify files under out_dir from Python.
        if event == "open":
            path, mode, flags = args
            if mode is not None:
                writing = any(c in str(mode) for c in "wax+")
            else:
                bits = os.O_WRONLY | os.O_RDWR | os.O_CREAT
                writing = isinstance(flags, int) and bool(flags & bits)
        elif event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree",
                       "os.truncate", "os.symlink", "os.link"):
            path, writing = args[0], True
        else:
            return
        if writing and isinstance(path, (str, os.PathLike)):
            p = os.path.abspath(os.fspath(path))
            if p == OUT or p.startswith(OUT + os.sep):
                writes.append([event, os.path.relpath(p, OUT)])

    sys.addaudithook(audit)

    from transformers import LlamaConfig, LlamaForCausalLM
    from alignkit.train.config import OptimConfig, TrainConfig
    from alignkit.train.engine import Engine, StepLoss

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32))

    def epoch_batches(epoch):
        g = torch.Generator().manual_seed(100 + epoch)
        out = []
        for i in range(8):
            ids = torch.randint(0, 64, (4, 10), generator=g)
            labels = ids.clone()
            labels[:, : 1 + (3 * i) % 8] = -100  # 1..8 prompt tokens: ragged unit counts
            out.append({"input_ids": ids, "labels": labels})
        return out

    def loss_fn(model, b):
        logits = model(input_ids=b["input_ids"]).logits[:, :-1]  # (B, T-1, V)
        labels = b["labels"][:, 1:]  # (B, T-1)
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                              ignore_index=-100, reduction="sum")
        return StepLoss(loss_sum=nll, n_units=(labels != -100).sum(),
                        n_tokens=b["input_ids"].numel())

    cfg = TrainConfig(max_steps=6, grad_accum=grad_accum, save_every=2, seed=0, progress=True,
                      optim=OptimConfig(lr=1e-2, weight_decay=0.1, warmup_steps=1))
    engine = Engine(model=model, config=cfg, out_dir=out_dir, epoch_batches=epoch_batches,
                    loss_fn=loss_fn, eval_fn=lambda m: {"probe": 1.0})
    result = engine.train()
    rank = engine.rank
    with open(os.path.join(record_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"world": engine.world_size, "writes": writes, "history": result.history}, f)
    if rank == 0:
        state = {k: v.detach().clone() for k, v in engine.unwrapped_model().state_dict().items()}
        torch.save(state, os.path.join(record_dir, "final.pt"))
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(script: Path, out_dir: Path, record_dir: Path, grad_accum: int,
           dist_env: dict[str, str] | None = None) -> subprocess.Popen:
    record_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **(dist_env or {}))
    return subprocess.Popen([sys.executable, str(script), str(out_dir), str(record_dir),
                             str(grad_accum)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait(proc: subprocess.Popen, timeout: float = 300) -> None:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"process timed out:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-3000:]


def test_two_processes_match_one_and_only_rank0_writes(tmp_path):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    port = str(_free_port())
    ranks = [_start(script, tmp_path / "ddp", tmp_path / "rec_ddp", 1,
                    {"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                     "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
             for r in range(2)]
    single = _start(script, tmp_path / "one", tmp_path / "rec_one", 2)
    for p in (*ranks, single):
        _wait(p)

    r0 = json.loads((tmp_path / "rec_ddp" / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rec_ddp" / "rank1.json").read_text())
    one = json.loads((tmp_path / "rec_one" / "rank0.json").read_text())
    assert (r0["world"], r1["world"], one["world"]) == (2, 2, 1)

    # Same trajectory: loss, grad norm and lr at every step; the final weights.
    h2, h1 = r0["history"], one["history"]
    assert [x["step"] for x in h2] == [x["step"] for x in h1] == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "grad_norm", "lr"):
        assert [x[key] for x in h2] == pytest.approx([x[key] for x in h1], rel=1e-5), key
    assert len({x["loss"] for x in h2}) == 6  # a real trajectory, not a constant
    timing = ("tokens_per_s", "elapsed_s")
    assert [{k: v for k, v in x.items() if k not in timing} for x in r1["history"]] == \
        [{k: v for k, v in x.items() if k not in timing} for x in h2]  # same reduced metrics
    w2 = torch.load(tmp_path / "rec_ddp" / "final.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rec_one" / "final.pt", weights_only=True)
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-5, atol=1e-6)

    # Only rank 0 wrote: metrics, checkpoints (2, 4, 6 -> 4, 6 kept); rank 1 wrote nothing.
    assert r1["writes"] == []
    written = {path for _, path in r0["writes"]}
    assert "metrics.jsonl" in written
    assert any(p.startswith("checkpoints") and p.endswith("model.safetensors") for p in written)
    ckpts = sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir())
    assert ckpts == ["step-00000004", "step-00000006"]
    lines = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[-1])["val/probe"] == 1.0
