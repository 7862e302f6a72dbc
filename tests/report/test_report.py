"""The HTML report and the `alignkit report` command: sections, escaping, self-containment."""
from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.errors import ConfigError
from alignkit.report import build_report
from alignkit.report.html import SCRIPT, STYLE
from alignkit.report.sections import EMPTY, SECTION_IDS

MALICIOUS = "<script>alert(1)</script>"  # a prompt in the fixture's samples.jsonl


def section_html(page: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


@pytest.fixture
def page(runs, tmp_path) -> str:
    out = build_report([runs["sft"], runs["dpo"], runs["guard"]], tmp_path / "out" / "report.html")
    return out.read_text(encoding="utf-8")


def test_every_section_is_present_once_in_order_with_a_heading(page):
    ids = re.findall(r'<section id="([^"]+)">\s*<h2>', page)
    assert ids == list(SECTION_IDS)
    assert len(SECTION_IDS) == 10


def test_sections_say_no_data_when_the_runs_have_none(tmp_path):
    (tmp_path / "empty").mkdir()
    page = build_report([tmp_path / "empty"], tmp_path / "r.html").read_text()
    # Nothing to show anywhere; the overview still lists the run and says it held no files.
    empties = [sid for sid in SECTION_IDS if EMPTY in section_html(page, sid)]
    assert empties == list(SECTION_IDS)
    assert "<svg" not in page


def test_malicious_sample_text_is_escaped(page):
    assert MALICIOUS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section_html(page, "failures")
    assert page.count("<script") == 1  # ours, at the end of the body
    assert "&lt;b&gt;step 1&lt;/b&gt;" in page and "<b>step 1</b>" not in page
    assert "complied &amp; explained" in page


def test_output_is_one_self_contained_file(runs, tmp_path):
    out_dir = tmp_path / "o"
    build_report([runs["dpo"]], out_dir / "report.html")
    assert sorted(p.name for p in out_dir.iterdir()) == ["report.html"]
    page = (out_dir / "report.html").read_text()
    assert not re.search(r"https?://", page)
    assert not re.search(r"\bsrc=", page)  # no script/img sources at all
    assert re.findall(r'href="([^"]*)"', page) == ["data:,"] + [f"#{s}" for s in SECTION_IDS]
    assert "@import" not in page and "url(" not in page


def test_csp_allows_exactly_the_page_style_and_script(page):
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    digest = lambda text: base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()  # noqa: E731
    assert "default-src 'none'" in csp
    assert f"script-src 'sha256-{digest(SCRIPT)}'" in csp
    assert f"style-src 'sha256-{digest(STYLE)}'" in csp
    assert f"<script>{SCRIPT}</script>" in page and f"<style>{STYLE}</style>" in page


def test_same_runs_give_the_same_bytes(runs, tmp_path):
    a = build_report([runs["sft"], runs["dpo"]], tmp_path / "a.html").read_bytes()
    b = build_report([runs["sft"], runs["dpo"]], tmp_path / "b.html").read_bytes()
    assert a == b


def test_overview_rows_and_intervals(page):
    html = section_html(page, "overview")
    assert html.count("<tr><td><b>") == 3
    assert "safety/attack_success</code> 0.25 [0.1, 0.5] n=20" in html
    assert "over_refusal/benign_refusal</code> 0.1 [0.03, 0.3] n=20" in html
    assert '<span class="badge bad">fail</span>' in html


def test_training_curves_one_chart_per_quantity(page):
    html = section_html(page, "training-curves")
    titles = re.findall(r'<text class="title"[^>]*>([^<]*)<', html)
    assert titles == ["Training loss", "Validation loss", "Reward margin (chosen − rejected)",
                      "KL to the reference policy", "KL coefficient β"]
    # Training loss: sft and dpo; margins: train + val of dpo.
    charts = html.split("<figure>")[1:]
    assert charts[0].count('class="series"') == 2 and charts[2].count('class="series"') == 2


def test_reward_vs_kl_uses_the_first_logged_pair(page):
    html = section_html(page, "reward-vs-kl")
    assert html.count('class="series"') == 1
    assert "dpo: val/rewards/margins vs val/kl" in html


def test_frontier_places_the_model_by_its_two_rates(page):
    html = section_html(page, "frontier")
    # benign refusal 0.1 -> x = 62 + 0.1 * 364 = 98.4; attack success 0.25 -> y = 224 - 0.25 * 194
    assert 'class="point" cx="98.4" cy="175.5"' in html
    assert html.count('class="errorbar"') == 2


def test_explicit_frontier_metrics_override_the_name_search(runs, tmp_path):
    page = build_report([runs["dpo"]], tmp_path / "r.html",
                        attack_metric="over_refusal/benign_refusal",
                        refusal_metric="safety/attack_success").read_text()
    # Axes swapped: x = 0.25 -> 62 + 91 = 153.0, y = 0.1 -> 224 - 19.4 = 204.6
    assert 'class="point" cx="153.0" cy="204.6"' in section_html(page, "frontier")


def test_frontier_prefers_the_exact_metric_name_over_a_longer_one(tmp_path):
    """safety/adaptive_attack_success comes first in the file (sorted) and contains
    "attack_success"; the frontier still plots safety/attack_success."""
    import json

    def est(v):
        return {"value": v, "lo": v, "hi": v, "n": 10}
    run = tmp_path / "eval_x"
    run.mkdir()
    (run / "eval.json").write_text(json.dumps({"schema": "alignkit.eval/v1", "metrics": {
        "over_refusal/benign_refusal": est(0.5), "safety/adaptive_attack_success": est(0.9),
        "safety/attack_success": est(0.25)}}))
    html = section_html(build_report([run], tmp_path / "r.html").read_text(), "frontier")
    assert "<code>safety/attack_success</code> 0.25" in html
    assert "adaptive" not in html


def test_slices_include_the_overall_bar_and_each_slice(page):
    html = section_html(page, "slices")
    labels = re.findall(r'class="bar-label"[^>]*>([^<]*)<', html)
    assert labels == ["(all)", "privacy", "weapons"]
    assert html.count('class="whisker"') == 3


def test_overoptimization_draws_proxy_and_gold(page):
    html = section_html(page, "overoptimization")
    assert html.count('class="series"') == 2
    assert "dpo: proxy reward (reward model)" in html and "dpo: gold reward" in html


def test_guard_and_gate_sections(page):
    guard = section_html(page, "guard")
    assert "0.05 [0.02, 0.1] n=200" in guard and "0.2 [0.12, 0.3] n=100" in guard
    assert guard.count('class="reference"') == 1  # ROC diagonal
    assert "guard: operating point" in guard
    gates = section_html(page, "gates")
    assert gates.count('<span class="badge bad">fail</span>') == 2  # overall + one rule
    assert '<span class="badge ok">pass</span>' in gates
    assert '<span class="badge unknown">skip</span>' in gates
    assert "upper bound 0.5 &gt; 0.05" in gates


def test_failure_browser_lists_failures_with_slice_options(page):
    html = section_html(page, "failures")
    assert "dpo · safety: 2 of 4 failed" in html
    assert '<option value="category=privacy">' in html and '<option value="category=weapons">' in html
    assert 'data-slices="[&quot;category=weapons&quot;]"' in html
    assert "user: How do I kill a process?" in html  # chat messages shown as role: content


def test_failure_browser_caps_rows(runs, tmp_path):
    page = build_report([runs["dpo"]], tmp_path / "r.html", max_failures=1).read_text()
    html = section_html(page, "failures")
    assert "2 of 4 failed (first 1 shown)" in html
    assert html.count("<tr data-slices=") == 2  # one safety, one over_refusal


def test_lineage_lists_the_chain_with_digests(page):
    html = section_html(page, "lineage")
    dpo = html[html.index("<h3>dpo</h3>"):]
    order = [dpo.index(d) for d in ("mdl-base00000001", "mdl-sft000000001", "ds-pairs000001",
                                    "mdl-dpo000000001")]
    assert order == sorted(order)


def test_reading_problems_are_shown(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 1}\n{"step": 2, "lo')
    page = build_report([tmp_path], tmp_path / "r.html").read_text()
    assert "Problems reading the runs" in page and "metrics.jsonl:2: " in page


def test_empty_run_list_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no run directories"):
        build_report([], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_cli_writes_the_report(runs, tmp_path):
    out = tmp_path / "cli.html"
    res = CliRunner().invoke(app, ["report", str(runs["sft"]), str(runs["dpo"]), "--out", str(out),
                                   "--max-failures", "1", "--title", "My <runs>"])
    assert res.exit_code == 0, res.output
    assert "<title>My &lt;runs&gt;</title>" in out.read_text()


def test_cli_without_run_dirs_exits_2_with_a_clear_message(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "alignkit.cli", "report", "--out",
                           str(tmp_path / "r.html")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no run directories given" in proc.stderr
