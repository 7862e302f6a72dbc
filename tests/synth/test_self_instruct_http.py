"""OpenAIChatGenerator against a stub chat-completions server on 127.0.0.1 (http.server in a thread)."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alignkit.errors import ConfigError
from alignkit.synth.generators import GeneratorConfig, GeneratorError, OpenAIChatGenerator


def completion(content):
    return json.dumps({"id": "x", "object": "chat.completion",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": content}}]})


class Stub:
    """Replies from a script: each step is (status, body, delay_s, headers); when the script is
    used up, it answers `responder(prompt)` (default: an echo). Records every request's path, headers and JSON body."""

    def __init__(self, script=(), responder=None):
        self.script = list(script)
        self.responder = responder or (lambda prompt: "echo: " + prompt)
        self.requests = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    step = stub.script.pop(0) if stub.script else None
                if step is None:
                    step = (200, completion(stub.responder(body["messages"][0]["content"])), 0, {})
                status, text, delay, headers = step
                if delay:
                    time.sleep(delay)
                data = text.encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    stubs = []

    def make(*script):
        s = Stub(script)
        stubs.append(s)
        return s

    yield make
    for s in stubs:
        s.close()


def client(stub, sleeps=None, **kw):
    kw.setdefault("backoff_s", 0.5)
    kw.setdefault("jitter", False)
    return OpenAIChatGenerator(stub.base_url, "tiny-chat", sleep=(sleeps.append if sleeps is not None else lambda s: None), **kw)


def test_success_sends_chat_request_with_key_from_env(stub, monkeypatch):
    monkeypatch.setenv("ALIGNKIT_API_KEY", "sk-test-123")
    s = stub((200, completion("1. Name a river."), 0, {}))
    gen = client(s)
    assert gen.generate(["Come up with tasks"], 64, 0.7, 5) == ["1. Name a river."]
    (req,) = s.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sk-test-123"
    assert req["body"] == {"model": "tiny-chat", "messages": [{"role": "user", "content": "Come up with tasks"}],
                           "max_tokens": 64, "temperature": 0.7, "seed": 5, "n": 1}
    assert "sk-test" not in json.dumps(gen.describe()) and gen.describe()["api_key_set"] is True


def test_no_key_no_authorization_header(stub, monkeypatch):
    monkeypatch.delenv("ALIGNKIT_API_KEY", raising=False)
    s = stub()
    client(s).generate(["hi"], 8, 0.0, 0)
    assert "Authorization" not in s.requests[0]["headers"]


def test_order_kept_and_seed_per_prompt_under_concurrency(stub):
    s = stub()
    prompts = [f"prompt {i}" for i in range(6)]
    out = client(s, concurrency=3).generate(prompts, 8, 0.5, 100)
    assert out == [f"echo: prompt {i}" for i in range(6)]
    seeds = {r["body"]["messages"][0]["content"]: r["body"]["seed"] for r in s.requests}
    assert seeds == {f"prompt {i}": 100 + i for i in range(6)}


def test_retries_500_then_429_with_backoff_then_succeeds(stub):
    s = stub((500, '{"error": "boom"}', 0, {}),
             (429, '{"error": "slow down"}', 0, {"Retry-After": "3"}),
             (503, "unavailable", 0, {}),
             (200, completion("ok"), 0, {}))
    sleeps = []
    gen = client(s, sleeps, max_retries=3, backoff_s=0.5, max_backoff_s=10)
    assert gen.generate(["p"], 8, 0.0, 0) == ["ok"]
    # waits: retry 1 = 0.5 * 2**0 after the 500; retry 2 = the server's Retry-After (3 s);
    # retry 3 = 0.5 * 2**2 = 2.0 after the 503
    assert sleeps == [0.5, 3.0, 2.0]
    assert gen.n_requests == 4 and len(s.requests) == 4


def test_backoff_is_capped_and_gives_up_naming_the_last_failure(stub):
    s = stub(*[(502, "bad gateway", 0, {})] * 4)
    sleeps = []
    gen = client(s, sleeps, max_retries=3, backoff_s=1.0, max_backoff_s=2.5)
    with pytest.raises(GeneratorError, match=r"gave up after 4 attempts; last failure: HTTP 502 'bad gateway'"):
        gen.generate(["p"], 8, 0.0, 0)
    assert sleeps == [1.0, 2.0, 2.5]  # 1, 2, 4 capped at 2.5


def test_jitter_scales_waits_between_half_and_full(stub):
    s = stub((500, "x", 0, {}), (500, "x", 0, {}))
    sleeps = []
    client(s, sleeps, max_retries=2, backoff_s=1.0, jitter=True).generate(["p"], 8, 0.0, 0)
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0


def test_timeout_is_retried_then_reported(stub):
    s = stub((200, completion("late"), 1.0, {}), (200, completion("late"), 1.0, {}))
    gen = client(s, timeout_s=0.2, max_retries=1)
    start = time.perf_counter()
    with pytest.raises(GeneratorError, match=r"gave up after 2 attempts; last failure: timed out after 0.2 s"):
        gen.generate(["p"], 8, 0.0, 0)
    assert time.perf_counter() - start < 1.5


def test_timeout_then_success(stub):
    s = stub((200, completion("late"), 1.0, {}), (200, completion("on time"), 0, {}))
    assert client(s, timeout_s=0.2, max_retries=2).generate(["p"], 8, 0.0, 0) == ["on time"]


@pytest.mark.parametrize("body,message", [
    ("this is not json{", r"reply is not valid JSON .*body starts 'this is not json\{'"),
    ('["a", "list"]', r"reply must be a JSON object, got list"),
    ('{"object": "chat.completion"}', r"no non-empty 'choices' list \(keys: \['object'\]\)"),
    ('{"choices": []}', r"no non-empty 'choices' list"),
    ('{"choices": [{"text": "legacy completion"}]}', r"'choices\[0\].message' is missing"),
    ('{"choices": [{"message": {"content": null}, "finish_reason": "content_filter"}]}',
     r"'choices\[0\].message.content' is NoneType, not a string \(finish_reason='content_filter'\)"),
    ('{"error": {"message": "model not found"}}', r"endpoint returned an error object: .*model not found"),
])
def test_malformed_reply_is_a_clear_error_without_retry(stub, body, message):
    s = stub((200, body, 0, {}))
    gen = client(s, max_retries=3)
    with pytest.raises(GeneratorError, match=message) as err:
        gen.generate(["p"], 8, 0.0, 0)
    assert s.base_url in str(err.value)  # names where the reply came from
    assert len(s.requests) == 1


def test_client_error_fails_at_once_with_hint(stub):
    s = stub((401, '{"error": "invalid key"}', 0, {}))
    with pytest.raises(GeneratorError, match=r"HTTP 401 .*check the API key.*invalid key"):
        client(s, max_retries=3).generate(["p"], 8, 0.0, 0)
    assert len(s.requests) == 1


def test_connection_refused_is_retried():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    sleeps = []
    gen = OpenAIChatGenerator(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, backoff_s=0.1,
                              jitter=False, sleep=sleeps.append)
    with pytest.raises(GeneratorError, match="gave up after 3 attempts; last failure: connection failed"):
        gen.generate(["p"], 8, 0.0, 0)
    assert sleeps == [0.1, 0.2]


def test_config_validation_and_redaction():
    with pytest.raises(ValueError, match="base_url is required"):
        GeneratorConfig(kind="openai", model="m")
    with pytest.raises(ValueError, match="generator.model is required"):
        GeneratorConfig(kind="local")
    with pytest.raises(ValueError, match="kind is 'local'"):
        GeneratorConfig(model="builtin:world-tiny", base_url="http://x")
    cfg = GeneratorConfig(kind="openai", model="m", base_url="http://127.0.0.1:1/v1", api_key="sk-secret")
    assert cfg.redacted()["api_key"] == "***"
    with pytest.raises(ConfigError, match="must start with http"):
        OpenAIChatGenerator("127.0.0.1:8000", "m")


def self_instruct_responder(prompt):
    """Canned Self-Instruct replies: two new instructions, 'No', one input-first instance."""
    if prompt.startswith("Come up with a series of tasks:"):
        return " Describe the water cycle in simple words.\n10. Suggest a name for a pet turtle."
    if prompt.endswith("Is it classification?"):
        return "No"
    return "\nInput:\nOutput: A short answer."


def test_cli_self_instruct_against_the_stub_endpoint_then_resume(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from alignkit.cli import app
    from alignkit.contract.manifest import read_manifest

    pytest.importorskip("rouge_score")
    monkeypatch.delenv("ALIGNKIT_API_KEY", raising=False)
    s = Stub(responder=self_instruct_responder)
    try:
        seeds = tmp_path / "seeds.jsonl"
        seeds.write_text("".join(json.dumps({"id": f"s{i}", "instruction": f"List {i} things found in a kitchen.",
                                             "instances": [], "is_classification": False}) + "\n"
                                 for i in range(8)), encoding="utf-8")
        cfg = tmp_path / "si.yaml"
        cfg.write_text(f"seed_tasks: {seeds}\nprompts_per_round: 2\n"
                       f"generator:\n  kind: openai\n  base_url: {s.base_url}\n  model: stub-model\n"
                       f"  api_key: sk-in-config\n", encoding="utf-8")
        runner = CliRunner()
        res = runner.invoke(app, ["synth", "self-instruct", "--config", str(cfg), "--out", str(tmp_path / "run")])
        assert res.exit_code == 0, res.output
        pool = (tmp_path / "run" / "pool.jsonl").read_text().splitlines()
        # 2 prompts x 2 instructions = 4 candidates; the second prompt's two are exact duplicates
        assert [json.loads(x)["instruction"] for x in pool] == [
            "Describe the water cycle in simple words.", "Suggest a name for a pet turtle."]
        assert s.requests[0]["headers"]["Authorization"] == "Bearer sk-in-config"
        manifest_text = (tmp_path / "run" / "manifest.json").read_text()
        assert "sk-in-config" not in manifest_text  # the key is redacted
        m = read_manifest(tmp_path / "run")
        assert m.config["generator"]["api_key"] == "***"
        assert m.base_model["id"] == f"openai:stub-model@{s.base_url}"
        assert m.metrics["removed/exact_duplicate"] == 2

        res = runner.invoke(app, ["synth", "self-instruct", "--config", str(cfg), "--out", str(tmp_path / "run")])
        assert res.exit_code != 0 and "--resume" in str(res.exception)
        res = runner.invoke(app, ["synth", "self-instruct", "--config", str(cfg), "--out", str(tmp_path / "run"),
                                  "--resume", "--set", "rounds=2"])
        assert res.exit_code == 0, res.output
        lines = (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()
        assert [json.loads(x)["round"] for x in lines] == [1, 2]
        assert (tmp_path / "run" / "pool.jsonl").read_text().splitlines() == pool  # all 4 new ones were duplicates
        assert json.loads(lines[1])["removed"]["exact_duplicate"] == 4
    finally:
        s.close()
