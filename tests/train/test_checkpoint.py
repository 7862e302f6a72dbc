"""Atomic checkpoints: bitwise round trip, exact resume, checksums, crash leftovers, ties."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors import safe_open

from alignkit.contract.digest import digest_obj, sha256_file
from alignkit.errors import CheckpointError
from alignkit.train import checkpoint as ck
from alignkit.train.checkpoint import (
    FILES,
    INDEX_NAME,
    atomic_write_json,
    checkpoint_dir,
    get_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    set_rng_state,
    verify_checkpoint,
)


class Tied(torch.nn.Module):
    """Embedding and output projection share one weight, as in tied-embedding LMs."""

    def __init__(self, vocab=7, dim=4):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.hidden = torch.nn.Linear(dim, dim)
        self.drop = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        return self.head(self.drop(torch.tanh(self.hidden(self.embed(ids)))))


def _train_parts(seed=0):
    torch.manual_seed(seed)
    model = Tied()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    return model, opt, sched


def _step(model, opt, sched):
    """One step whose data, dropout mask and extra noise all come from the global RNGs."""
    ids = torch.randint(0, 7, (3, 5))
    noise = random.random() + float(np.random.rand())
    loss = model(ids).logsumexp(-1).mean() * (1 + noise)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()


def _save(ckpt, model, opt, sched, step, config=None):
    return save_checkpoint(ckpt, model_state=model.state_dict(), optimizer_state=opt.state_dict(),
                           scheduler_state=sched.state_dict(), rng_state=get_rng_state(),
                           trainer_state={"step": step, "epoch": 0, "position": step * 3},
                           config=config or {"lr": 0.05})


def _assert_nested_equal(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_nested_equal(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_nested_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.fixture
def saved(tmp_path):
    model, opt, sched = _train_parts()
    _step(model, opt, sched)
    d = checkpoint_dir(tmp_path, 1)
    digest = _save(d, model, opt, sched, 1)
    return d, digest, model, opt, sched


def test_round_trip_is_bitwise(saved):
    d, digest, model, opt, sched = saved
    c = load_checkpoint(d)
    assert c.digest == digest and c.path == d
    _assert_nested_equal(model.state_dict(), c.model_state, "model")
    _assert_nested_equal(opt.state_dict(), c.optimizer_state, "optimizer")
    _assert_nested_equal(sched.state_dict(), c.scheduler_state, "scheduler")
    assert c.trainer_state == {"step": 1, "epoch": 0, "position": 3}
    assert c.config == {"lr": 0.05}


def test_dtypes_survive(tmp_path):
    state = {"bf16": torch.randn(3).to(torch.bfloat16), "f16": torch.randn(2, 2).half(),
             "i64": torch.arange(4), "bool": torch.tensor([True, False]), "empty": torch.zeros(0),
             "noncontig": torch.arange(6.0).reshape(2, 3).t()}
    save_checkpoint(tmp_path / "c", model_state=state, optimizer_state=None, scheduler_state=None,
                    rng_state={}, trainer_state={}, config={})
    back = load_checkpoint(tmp_path / "c").model_state
    _assert_nested_equal(state, back)


def test_resume_reproduces_uninterrupted_run_exactly(tmp_path):
    """5 steps straight == 3 steps, checkpoint, fresh objects + restored RNG, 2 more steps."""
    torch.manual_seed(1); random.seed(1); np.random.seed(1)
    model, opt, sched = _train_parts()
    for _ in range(3):
        _step(model, opt, sched)
    _save(checkpoint_dir(tmp_path, 3), model, opt, sched, 3)
    for _ in range(2):
        _step(model, opt, sched)
    straight = {k: v.clone() for k, v in model.state_dict().items()}

    # Scramble every RNG, as a new process would have them.
    torch.manual_seed(999); random.seed(999); np.random.seed(999)
    c = load_checkpoint(latest_checkpoint(tmp_path))
    model2, opt2, sched2 = _train_parts(seed=123)
    model2.load_state_dict(c.model_state)
    opt2.load_state_dict(c.optimizer_state)
    sched2.load_state_dict(c.scheduler_state)
    set_rng_state(c.rng_state)
    for _ in range(2):
        _step(model2, opt2, sched2)
    _assert_nested_equal(straight, model2.state_dict(), "resumed")
    assert model2.head.weight is model2.embed.weight  # still tied


def test_tied_weights_are_stored_once_and_come_back_shared(saved):
    d, _, model, _, _ = saved
    with safe_open(str(d / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "embed.weight" in keys and "head.weight" not in keys  # alias, not a copy
    state = load_checkpoint(d).model_state
    assert state["head.weight"] is state["embed.weight"]
    fresh = Tied()
    fresh.load_state_dict(state, strict=True)
    assert fresh.head.weight is fresh.embed.weight
    torch.testing.assert_close(fresh.head.weight, model.head.weight, rtol=0, atol=0)


def test_partially_overlapping_tensors_are_copied(tmp_path):
    base = torch.arange(6.0)
    state = {"all": base, "head": base[:2], "tail": base[4:]}
    save_checkpoint(tmp_path / "c", model_state=state, optimizer_state=None,
                    scheduler_state=None, rng_state={}, trainer_state={}, config={})
    back = load_checkpoint(tmp_path / "c").model_state
    _assert_nested_equal(state, back)


def test_every_pt_file_loads_with_weights_only(saved):
    d = saved[0]
    for name in ("optimizer.pt", "scheduler.pt", "rng.pt"):
        obj = torch.load(d / name, weights_only=True)
        assert obj is not None
    rng = torch.load(d / "rng.pt", weights_only=True)
    assert set(rng) == {"torch", "cuda", "python", "numpy"}
    assert len(rng["numpy"]["keys"]) == 624 and isinstance(rng["numpy"]["keys"][0], int)


def test_index_lists_sha256_of_every_file_and_the_digest(saved):
    """The digest is digest_obj({"format": 1, "files": {name: sha256}}, "ckpt")."""
    d, digest, *_ = saved
    index = json.loads((d / INDEX_NAME).read_text())
    assert index["files"] == {name: sha256_file(d / name) for name in FILES}
    assert digest == index["digest"] == digest_obj({"format": 1, "files": index["files"]}, "ckpt")
    assert (d / "trainer_state.json").read_text() == \
        '{\n  "epoch": 0,\n  "position": 3,\n  "step": 1\n}\n'


def test_digest_depends_on_content_only(tmp_path):
    """Repeated saves of one state must be byte-identical (several tries: a map written in
    hash order, e.g. safetensors metadata with two keys, differs only now and then)."""
    parts = _train_parts()
    same = {_save(tmp_path / f"a{i}", *parts, step=0) for i in range(6)}
    c = _save(tmp_path / "c", *parts, step=0, config={"lr": 0.06})
    assert len(same) == 1 and c not in same


@pytest.mark.parametrize("name", FILES)
def test_flipping_one_byte_of_any_file_is_caught_and_named(saved, name):
    d = saved[0]
    path = d / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_checkpoint(d)


def test_tampered_index_is_caught_and_named(saved):
    d = saved[0]
    index = json.loads((d / INDEX_NAME).read_text())
    h = index["files"]["optimizer.pt"]
    index["files"]["optimizer.pt"] = ("0" if h[0] != "0" else "1") + h[1:]
    (d / INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=INDEX_NAME):
        load_checkpoint(d)
    (d / INDEX_NAME).write_text('{"format": 1, "files": ')
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(d)


@pytest.mark.parametrize("name", [*FILES, INDEX_NAME])
def test_missing_file_is_named(saved, name):
    d = saved[0]
    (d / name).unlink()
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_checkpoint(d)


def test_verify_false_skips_hashing_but_not_the_index(saved, monkeypatch):
    d = saved[0]
    monkeypatch.setattr(ck, "sha256_file", lambda p: pytest.fail("hashed despite verify=False"))
    assert load_checkpoint(d, verify=False).trainer_state["step"] == 1


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError):
        verify_checkpoint(tmp_path / "nope")


def test_crash_leftovers_are_ignored_by_latest(saved, tmp_path):
    d = saved[0]  # step 1, complete
    root = d.parent
    (root / ".tmp-step-00000009-123-abcdef01").mkdir()  # a crash mid-save
    (root / ".tmp-step-00000009-123-abcdef01" / "model.safetensors").write_bytes(b"x")
    (root / "step-00000007").mkdir()  # no checkpoint.json: not complete
    (root / "notes.txt").write_text("hi")
    assert latest_checkpoint(tmp_path) == d
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1]
    assert latest_checkpoint(tmp_path / "elsewhere") is None


def test_failed_save_leaves_no_directory_and_keeps_previous(saved, tmp_path, monkeypatch):
    d, _, model, opt, sched = saved
    calls = []

    def failing_write(path, data):
        calls.append(path.name)
        if len(calls) == 3:
            raise OSError("killed")
        with open(path, "wb") as f:
            f.write(data)

    monkeypatch.setattr(ck, "_write_synced", failing_write)
    with pytest.raises(OSError, match="killed"):
        _save(checkpoint_dir(tmp_path, 2), model, opt, sched, 2)
    assert latest_checkpoint(tmp_path) == d
    assert sorted(p.name for p in d.parent.iterdir()) == ["step-00000001"]


def test_bad_states_fail_before_touching_disk(tmp_path):
    model, opt, _ = _train_parts()
    sched_with_lambda = {"lr_lambdas": [lambda s: 1.0]}
    with pytest.raises(CheckpointError, match=r"scheduler_state\['lr_lambdas'\]\[0\]"):
        save_checkpoint(tmp_path / "c", model_state=model.state_dict(), optimizer_state=None,
                        scheduler_state=sched_with_lambda, rng_state={}, trainer_state={},
                        config={})
    with pytest.raises(CheckpointError, match="trainer_state"):
        save_checkpoint(tmp_path / "c", model_state=model.state_dict(), optimizer_state=None,
                        scheduler_state=None, rng_state={}, trainer_state={"t": torch.ones(1)},
                        config={})
    with pytest.raises(CheckpointError, match="not a tensor"):
        save_checkpoint(tmp_path / "c", model_state={"w": [1.0]}, optimizer_state=None,
                        scheduler_state=None, rng_state={}, trainer_state={}, config={})
    assert list(tmp_path.iterdir()) == []


def test_saving_the_same_step_again_replaces_it(saved, tmp_path):
    d, first, model, opt, sched = saved
    second = _save(d, model, opt, sched, 1, config={"lr": 0.5})
    assert second != first and load_checkpoint(d).config == {"lr": 0.5}
    assert sorted(p.name for p in d.parent.iterdir()) == ["step-00000001"]


def test_prune_keeps_newest_and_removes_temp_dirs(tmp_path):
    model, opt, sched = _train_parts()
    for step in (1, 2, 10, 11):
        _save(checkpoint_dir(tmp_path, step), model, opt, sched, step)
    (tmp_path / "checkpoints" / ".tmp-step-00000012-1-deadbeef").mkdir()
    removed = prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == [".tmp-step-00000012-1-deadbeef",
                                                "step-00000001", "step-00000002"]
    assert [s for s, _ in list_checkpoints(tmp_path)] == [10, 11]
    assert prune_checkpoints(tmp_path, keep=5) == []
    with pytest.raises(ValueError, match="keep"):
        prune_checkpoints(tmp_path, keep=0)


def test_checkpoint_dir_naming(tmp_path):
    assert checkpoint_dir(tmp_path, 123) == tmp_path / "checkpoints" / "step-00000123"
    with pytest.raises(ValueError):
        checkpoint_dir(tmp_path, -1)


def test_rng_state_restores_every_generator():
    state = get_rng_state()
    first = (torch.rand(3), random.random(), np.random.rand(2))
    set_rng_state(state)
    second = (torch.rand(3), random.random(), np.random.rand(2))
    assert torch.equal(first[0], second[0]) and first[1] == second[1]
    assert np.array_equal(first[2], second[2])


def test_rng_state_refuses_cuda_states_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    with pytest.raises(CheckpointError, match="CUDA"):
        set_rng_state({"cuda": [torch.zeros(8, dtype=torch.uint8)]})


def test_atomic_write_json(tmp_path):
    p = tmp_path / "sub" / "x.json"
    atomic_write_json(p, {"b": 1, "a": [1.5]})
    assert p.read_text() == '{\n  "a": [\n    1.5\n  ],\n  "b": 1\n}\n'
    atomic_write_json(p, {"c": None})
    assert json.loads(p.read_text()) == {"c": None}
    assert [q.name for q in p.parent.iterdir()] == ["x.json"]
    with pytest.raises(CheckpointError, match="JSON"):
        atomic_write_json(p, {"t": object()})
    assert json.loads(p.read_text()) == {"c": None}
