"""`alignkit gate`: read the spec and the runs, print the verdict table, write gate.json and
the model card, and return the exit code (0 pass, 1 fail, 2 usage or config error).

Kept out of cli.py so the command's behaviour is library code with tests; cli.py only parses
options and calls `run_gate`.
"""
from __future__ import annotations

from pathlib import Path

from alignkit.errors import AlignkitError

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
VERDICT_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow"}


def print_gate_table(result, console) -> None:
    """The rich table: rule, observed, threshold, verdict, why."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"release gate: {result.run.run_dir}"))
    table.add_column("rule")
    table.add_column("observed", justify="right")
    table.add_column("threshold")
    table.add_column("verdict")
    table.add_column("why", overflow="fold")
    for r in result.rules:
        bound = "" if r.rule.bound == "value" else f" [{r.rule.bound}]"
        style = VERDICT_STYLE[r.verdict]
        table.add_row(escape(f"{r.index}: {r.rule.label}{bound}"), escape(r.observed_text),
                      escape(r.threshold_text), f"[{style}]{r.verdict.upper()}[/{style}]",
                      escape(r.reason))
    console.print(table)


def run_gate(run: str | Path, gates: str | Path, baseline: str | Path | None = None, *,
             card: bool = True, guard_report: str | Path | None = None,
             console=None) -> int:
    """Evaluate `gates` on `run` (vs `baseline`); write RUN/gate.json (and RUN/MODEL_CARD.md).

    Returns the exit code. Errors from bad input (AlignkitError) or the file system (OSError)
    are printed and give 2; any other exception (a bug) prints its traceback and gives 2 too:
    never 1, so a crash cannot be read as a failed gate. Any
    gate.json left in RUN by an earlier invocation is removed first, so after an error no stale
    verdict sits next to the run looking fresh.
    """
    from rich.console import Console
    from rich.markup import escape

    from alignkit.gates.card import guard_summary, write_model_card
    from alignkit.gates.gatefile import GATE_NAME, gate_report, write_gate_json
    from alignkit.gates.metrics import load_run_metrics
    from alignkit.gates.spec import load_gate_spec
    from alignkit.gates.verdict import evaluate_gates

    console = console or Console()
    err_console = Console(stderr=True)
    try:
        # An old verdict must not survive a failed re-check of the same run.
        if Path(run).is_dir():
            (Path(run) / GATE_NAME).unlink(missing_ok=True)
        spec = load_gate_spec(gates)
        run_metrics = load_run_metrics(run)
        if guard_report is not None:
            guard_summary(guard_report)  # a bad report is a usage error before any verdict
        base_metrics = load_run_metrics(baseline) if baseline is not None else None
        result = evaluate_gates(spec, run_metrics, base_metrics)
        report = gate_report(result, gates)
        gate_path = write_gate_json(run, report)
        print_gate_table(result, console)
        style = "green" if result.passed else "bold red"
        console.print(f"[{style}]gate {result.verdict.upper()}[/{style}]: {result.summary}",
                      soft_wrap=True)
        console.print(f"wrote {escape(str(gate_path))}", soft_wrap=True)
        if card:
            card_path = write_model_card(run, report, guard_report)
            console.print(f"wrote {escape(str(card_path))}", soft_wrap=True)
    except (AlignkitError, OSError) as err:  # a crash must not exit 1, which reads as "fail"
        err_console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False,
                          soft_wrap=True)
        return EXIT_ERROR
    except Exception:  # a bug: show it, but still never exit 1
        err_console.print_exception()
        return EXIT_ERROR
    return EXIT_PASS if result.passed else EXIT_FAIL
