"""The docs do not go stale: every stage page names every field of its config class, the index
lists every page, and the README opens with the two commands the Makefile provides."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# page -> config classes whose every field the page must name (as `field`, `field.sub` or
# `field:` in code formatting)
PAGES = {
    "pretrain.md": ["alignkit.world.pretrain:PretrainConfig", "alignkit.world.build:WorldConfig"],
    "sft.md": ["alignkit.train.sft:SFTConfig"],
    "reward.md": ["alignkit.train.reward:RewardConfig"],
    "prefer.md": ["alignkit.train.prefer:PreferConfig"],
    "rl.md": ["alignkit.train.rl:RLConfig", "alignkit.train.rl:KLConfig",
              "alignkit.train.rl:PPOConfig"],
    "eval.md": ["alignkit.evals.stage:EvalStageConfig"],
    "study.md": ["alignkit.studies.overoptimization:OveroptConfig",
                 "alignkit.studies.overoptimization:BonConfig",
                 "alignkit.studies.proxy:ProxyConfig"],
    "train.md": ["alignkit.train.config:TrainConfig", "alignkit.train.config:OptimConfig",
                 "alignkit.train.config:TrackingConfig"],
}


def config_class(spec: str):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("page,specs", sorted(PAGES.items()))
def test_stage_page_names_every_config_field(page, specs):
    text = (DOCS / page).read_text(encoding="utf-8")
    for spec in specs:
        missing = [f for f in config_class(spec).model_fields
                   if not re.search(rf"`(?:[a-z_]+\.)?{re.escape(f)}[`.:]", text)]
        assert not missing, f"docs/{page} does not describe {spec} field(s) {missing}"


def test_field_check_can_fail(tmp_path):
    """The pattern needs the name in code formatting: a bare word does not count."""
    assert re.search(r"`(?:[a-z_]+\.)?seed[`.:]", "the `seed` field")
    assert re.search(r"`(?:[a-z_]+\.)?clip[`.:]", "`ppo.clip`")
    assert not re.search(r"`(?:[a-z_]+\.)?seed[`.:]", "a seed for the run, `seeds`")


def test_index_lists_every_page_and_every_link_exists():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    links = set(re.findall(r"\]\(([^)#]+\.md)\)", index))
    pages = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    assert not links - pages, f"docs/index.md links to missing pages {sorted(links - pages)}"
    assert not pages - links, f"docs/index.md does not list {sorted(pages - links)}"


def test_readme_opens_with_the_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    block = readme[readme.index("```bash") + 1:readme.index("```bash") + 3]
    assert [line.split()[:2] for line in block] == [["make", "demo"], ["make", "test"]]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
