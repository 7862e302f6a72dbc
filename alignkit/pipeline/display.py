"""Tables the pipeline prints: the plan (what will happen and why) and the summary."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from alignkit.pipeline.plan import PlannedStage
    from alignkit.pipeline.run import StageResult

ACTION_STYLE = {"run": "bold", "resume": "yellow", "reuse": "green", "failed": "bold red",
                "not run": "dim"}


def fmt_seconds(seconds: float | None) -> str:
    """12.3 s, 4 min 05 s, 1 h 02 min."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def time_left(estimates: list[float | None], spent: float, spent_estimated: float
              ) -> float | None:
    """Seconds the stages still to run should take: the sum of their estimates (`estimate_s`
    of the pipeline file), scaled by how this machine has done so far (seconds spent on the
    stages run / their estimates, clamped to [0.25, 4]). None when a stage to run has no
    estimate: an unknown is not shown as a number.

        >>> time_left([60.0, 120.0], spent=0.0, spent_estimated=0.0)    # nothing run yet
        180.0
        >>> time_left([60.0, 120.0], spent=150.0, spent_estimated=100.0)  # 1.5x slower so far
        270.0
        >>> time_left([60.0, None], spent=0.0, spent_estimated=0.0) is None
        True
    """
    if any(e is None for e in estimates):
        return None
    scale = min(max(spent / spent_estimated, 0.25), 4.0) if spent_estimated > 0 else 1.0
    return scale * sum(estimates)


def fmt_metrics(metrics: dict[str, Any]) -> str:
    parts = []
    for k, v in metrics.items():
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return "  ".join(parts)


def _styled(action: str) -> str:
    style = ACTION_STYLE.get(action)
    return f"[{style}]{action}[/{style}]" if style else action


def _short_path(path: Path) -> str:
    """Relative to the working directory when inside it (narrow terminals), else absolute."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def plan_table(plan: list["PlannedStage"], root: str) -> Table:
    table = Table(title=f"pipeline plan ({root})")
    table.add_column("#", justify="right")
    table.add_column("stage")
    table.add_column("kind")
    table.add_column("action")
    table.add_column("why")
    table.add_column("key", no_wrap=True)
    table.add_column("out", overflow="fold")
    for p in plan:
        why = escape(p.why) + (" [dim](old run moved aside)[/dim]" if p.move_aside else "")
        table.add_row(str(p.stage.index + 1), p.stage.name, p.stage.kind.name, _styled(p.action),
                      why, p.stage.key, _short_path(p.stage.out))
    return table


def summary_table(results: list["StageResult"]) -> Table:
    table = Table(title="pipeline summary")
    table.add_column("stage")
    table.add_column("action")
    table.add_column("time", justify="right")
    table.add_column("main metrics")
    for r in results:
        table.add_row(r.name, _styled(r.action), fmt_seconds(r.seconds), fmt_metrics(r.main_metrics))
    return table
