"""Exact resume: a run interrupted after a checkpoint and resumed ends bitwise identical (CPU)
to the same run uninterrupted -- in process (an exception mid-run) and for real (SIGKILL of a
subprocess training a tiny Llama with dropout)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import alignkit.train.engine as engine_mod
from alignkit.errors import CheckpointError
from alignkit.train.checkpoint import latest_checkpoint, list_checkpoints
from alignkit.train.config import OptimConfig, TrainConfig
from alignkit.train.engine import Engine, StepLoss

REPO = Path(__file__).resolve().parents[2]
V = 13


class Interrupted(Exception):
    pass


def model_with_dropout(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Embedding(V, 8), nn.Dropout(0.3), nn.Linear(8, 16), nn.GELU(),
                         nn.Dropout(0.3), nn.Linear(16, V))


def epoch_batches(epoch: int) -> list[dict]:
    """Deterministic per epoch (seeded with 100 + epoch), as recipes must make them."""
    g = torch.Generator().manual_seed(100 + epoch)
    return [{"ids": torch.randint(0, V, (6,), generator=g),
             "targets": torch.randint(0, V, (6,), generator=g),
             "mask": (torch.rand(6, generator=g) > 0.3).float()} for _ in range(6)]


def make_loss(fail_on_call: int | None = None):
    calls = {"n": 0}

    def loss_fn(model, b):
        calls["n"] += 1
        if calls["n"] == fail_on_call:
            raise Interrupted
        nll = F.cross_entropy(model(b["ids"]), b["targets"], reduction="none")
        return StepLoss(loss_sum=(nll * b["mask"]).sum(), n_units=b["mask"].sum(),
                        n_tokens=len(b["ids"]))

    return loss_fn


CFG = TrainConfig(max_steps=8, grad_accum=2, save_every=3, keep_checkpoints=2, seed=5,
                  progress=False, optim=OptimConfig(lr=0.02, weight_decay=0.1, warmup_steps=2))


def engine(out_dir, *, seed: int = 0, fail_on_call: int | None = None, config=CFG) -> Engine:
    return Engine(model=model_with_dropout(seed), config=config, out_dir=out_dir,
                  epoch_batches=epoch_batches, loss_fn=make_loss(fail_on_call))


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"tensor {k} differs"


def interrupted_then_resumed(tmp_path, *, fail_on_call=11, **kw) -> Engine:
    """8 steps of 2 micro-batches, checkpoints at 3 and 6; call 11 is step 6's first micro-batch,
    so the run dies after writing metrics lines 1-5 with its last checkpoint at step 3."""
    first = engine(tmp_path, fail_on_call=fail_on_call)
    with pytest.raises(Interrupted):
        first.train()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3]
    resumed = engine(tmp_path, seed=99, **kw)  # different init: everything must come from disk
    resumed.train(resume=True)
    return resumed


def test_resume_in_process_is_bitwise_exact(tmp_path):
    ref = engine(tmp_path / "ref")
    ref_result = ref.train()
    resumed = interrupted_then_resumed(tmp_path / "run")
    assert_same_state(resumed.unwrapped_model().state_dict(), ref.unwrapped_model().state_dict())
    opt_a, opt_b = resumed.optimizer.state_dict()["state"], ref.optimizer.state_dict()["state"]
    for i in opt_b:
        for k in opt_b[i]:
            assert torch.equal(opt_a[i][k], opt_b[i][k])
    # metrics.jsonl: lines 4-5 of the dead session were dropped, every step appears once,
    # and the losses are the uninterrupted run's.
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, 9))
    assert [x["loss"] for x in lines] == [h["loss"] for h in ref_result.history]
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [6, 8]


def test_resume_without_rng_restore_would_differ(tmp_path, monkeypatch):
    """Control: the model's dropout makes the RNG matter, so the exactness test can fail."""
    ref = engine(tmp_path / "ref")
    ref.train()
    monkeypatch.setattr(engine_mod, "set_rng_state", lambda state: None)
    resumed = interrupted_then_resumed(tmp_path / "run")
    a, b = resumed.unwrapped_model().state_dict(), ref.unwrapped_model().state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_resume_of_a_finished_run_does_nothing(tmp_path):
    e = engine(tmp_path)
    done = e.train()
    again = engine(tmp_path, seed=3)
    result = again.train(resume=True)
    assert result.step == 8 and result.history == done.history
    assert_same_state(again.unwrapped_model().state_dict(), e.unwrapped_model().state_dict())


def test_resume_with_different_batches_per_step_is_refused(tmp_path):
    engine(tmp_path, config=CFG.model_copy(update={"max_steps": 3})).train()
    other = engine(tmp_path, config=CFG.model_copy(update={"grad_accum": 3}))
    with pytest.raises(CheckpointError, match="grad_accum x processes = 2 .* this run uses 3"):
        other.train(resume=True)


# ---------------------------------------------------------------------------------------------
# the real thing: SIGKILL a training process after its first checkpoint

SCRIPT = textwrap.dedent('''
    """Tiny Llama (hidden 32, attention dropout 0.2), 12 steps; argv: out_dir sleep_s [resume]."""
    import sys, time
    import torch
    import torch.nn.functional as F
    from transformers import LlamaConfig, LlamaForCausalLM
    from alignkit.train.config import OptimConfig, TrainConfig
    from alignkit.train.engine import Engine, StepLoss

    out_dir, sleep_s, resume = sys.argv[1], float(sys.argv[2]), "resume" in sys.argv[3:]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
        attention_dropout=0.2, tie_word_embeddings=True))

    def epoch_batches(epoch):
        g = torch.Generator().manual_seed(100 + epoch)
        out = []
        for _ in range(8):
            ids = torch.randint(0, 64, (2, 10), generator=g)
            labels = ids.clone()
            labels[:, : int(torch.randint(1, 6, (1,), generator=g))] = -100  # prompt part
            out.append({"input_ids": ids, "labels": labels})
        return out

    def loss_fn(model, b):
        time.sleep(sleep_s)  # slow enough to be killed mid-run
        logits = model(input_ids=b["input_ids"]).logits[:, :-1]  # (B, T-1, V)
        labels = b["labels"][:, 1:]  # (B, T-1)
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                              ignore_index=-100, reduction="sum")
        return StepLoss(loss_sum=nll, n_units=(labels != -100).sum(),
                        n_tokens=b["input_ids"].numel())

    cfg = TrainConfig(max_steps=12, grad_accum=2, save_every=2, keep_checkpoints=2, seed=3,
                      progress=False,
                      optim=OptimConfig(lr=1e-2, weight_decay=0.1, warmup_steps=2))
    engine = Engine(model=model, config=cfg, out_dir=out_dir, epoch_batches=epoch_batches,
                    loss_fn=loss_fn)
    engine.train(resume=resume)
    state = {k: v.detach().clone() for k, v in engine.unwrapped_model().state_dict().items()}
    torch.save(state, out_dir + "/final.pt")
''')


def _launch(script: Path, out_dir: Path, sleep_s: float, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(script), str(out_dir), str(sleep_s), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> None:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]


def test_sigkill_after_first_checkpoint_then_resume_is_bitwise_exact(tmp_path):
    script = tmp_path / "train_tiny.py"
    script.write_text(SCRIPT)
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref = _launch(script, ref_dir, 0.0)  # uninterrupted, runs alongside
    victim = _launch(script, run_dir, 0.08)  # ~0.16 s per optimizer step

    deadline = time.monotonic() + 120  # generous: the machine may be shared
    while latest_checkpoint(run_dir) is None:  # a step-* dir is complete (renamed into place)
        assert victim.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    assert victim.poll() is None, "the run finished before it could be killed"
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    killed_at = max(s for s, _ in list_checkpoints(run_dir))
    assert killed_at < 12 and not (run_dir / "final.pt").exists()

    _finish(_launch(script, run_dir, 0.0, "resume"))
    _finish(ref)

    a = torch.load(run_dir / "final.pt", weights_only=True)
    b = torch.load(ref_dir / "final.pt", weights_only=True)
    assert_same_state(a, b)
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ref_lines = [json.loads(x) for x in (ref_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, 13))
    assert [x["loss"] for x in lines] == [x["loss"] for x in ref_lines]
    assert lines[0]["loss"] != lines[-1]["loss"]
