"""The over-optimisation study's table (Markdown) and plot (PNG) from its result dict.

The plot has three panels:

1. best-of-n: gold and proxy reward against d = sqrt(KL), at the measured d (filled markers)
   and at the analytic d = sqrt(log n − (n − 1)/n) (hollow markers), with the fitted
   R_bon(d) = d(α − β d) curves (dotted) drawn over the measured d;
2. PPO: gold and proxy reward against the measured d at each checkpoint, with the fitted
   R_RL(d) = d(α − β log d) curves (dotted);
3. best-of-n KL against n: measured (plug-in) beside analytic.

Gold (0–1, exact match) uses the left axis, proxy (reward-model units) the right one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

PLOT_EXTRA = "pip install matplotlib"


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def table_markdown(result: dict[str, Any]) -> str:
    """Markdown: one row per measured point of each method, then the fitted parameters."""
    bon, ppo = result["bon"], result["ppo"]
    lines = ["| method | n / iteration | KL (nats) | d | d analytic | proxy | gold |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for i, n in enumerate(bon["n"]):
        lines.append(f"| best-of-n | n={n} | {_fmt(bon['kl'][i])} | {_fmt(bon['d'][i])} | "
                     f"{_fmt(bon['d_analytic'][i])} | {_fmt(bon['proxy'][i])} | "
                     f"{_fmt(bon['gold'][i])} |")
    for i, it in enumerate(ppo["iteration"]):
        lines.append(f"| PPO | it={it} | {_fmt(ppo['kl'][i])} | {_fmt(ppo['d'][i])} | – | "
                     f"{_fmt(ppo['proxy'][i])} | {_fmt(ppo['gold'][i])} |")
    lines += ["", "| fit | reward | form | α | β | R(0) | rmse | d at peak |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for method, res in (("best-of-n", bon), ("PPO", ppo)):
        for key in ("gold", "proxy"):
            f = res["fit"][key]
            lines.append(f"| {method} | {key} | {f['form']} | {_fmt(f['alpha'])} | "
                         f"{_fmt(f['beta'])} | {_fmt(f['r0'])} | {_fmt(f['rmse'])} | "
                         f"{_fmt(f['d_peak'])} |")
    s = result.get("summary")
    if s:
        lines += ["", f"PPO: proxy {s['proxy_start']:.3f} → {s['proxy_final']:.3f}; gold "
                      f"{s['gold_start']:.3f} → peak {s['gold_peak']:.3f} (iteration "
                      f"{s['gold_peak_iteration']}, d = {s['gold_peak_d']:.3f}) → "
                      f"{s['gold_final']:.3f} (drop {s['gold_drop']:.3f} ± "
                      f"{s['gold_drop_se']:.3f} SE); over-optimisation shown: "
                      f"{'yes' if s['overoptimized'] else 'no'}"]
    return "\n".join(lines) + "\n"


def write_table(result: dict[str, Any], path: str | Path) -> str:
    text = table_markdown(result)
    Path(path).write_text(text, encoding="utf-8")
    return text


def _curve(fit: dict[str, Any], d_max: float):
    from alignkit.studies.fits import predict

    xs = [d_max * i / 100 for i in range(101)]
    ys = predict(fit, xs)
    if ys is None:
        return None
    return xs, [y + fit["r0"] for y in ys]


def write_plot(result: dict[str, Any], path: str | Path) -> str | None:
    """Write the PNG; returns None, or why it was skipped (matplotlib missing)."""
    try:
        import matplotlib
    except ImportError:
        return f"matplotlib is not installed ({PLOT_EXTRA})"
    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    bon, ppo = result["bon"], result["ppo"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for ax, res, title, analytic in ((axes[0], bon, "best-of-n (n = 1 … %d)" % bon["n"][-1], True),
                                     (axes[1], ppo, "PPO against the proxy (checkpoints)", False)):
        right = ax.twinx()
        ax.plot(res["d"], res["gold"], "o-", color="tab:green", label="gold (exact match)")
        right.plot(res["d"], res["proxy"], "s-", color="tab:blue", label="proxy (reward model)")
        if analytic:
            ax.plot(res["d_analytic"], res["gold"], "o", mfc="none", color="tab:green",
                    alpha=0.6, label="gold at analytic d")
            right.plot(res["d_analytic"], res["proxy"], "s", mfc="none", color="tab:blue",
                       alpha=0.6, label="proxy at analytic d")
        d_max = max(res["d"]) if res["d"] else 0.0
        for key, axis, color in (("gold", ax, "tab:green"), ("proxy", right, "tab:blue")):
            curve = _curve(res["fit"][key], d_max)
            if curve is not None:
                axis.plot(*curve, ":", color=color, label=f"{key} fit: {res['fit'][key]['form']}")
        ax.set_xlabel("d = sqrt(KL(π ‖ π_ref))")
        ax.set_ylabel("gold reward", color="tab:green")
        right.set_ylabel("proxy reward", color="tab:blue")
        ax.set_title(title)
        handles = ax.get_legend_handles_labels()
        more = right.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="lower left")
    ax = axes[2]
    ax.plot(bon["n"], bon["kl_analytic"], "k--", label="analytic log n − (n−1)/n")
    ax.plot(bon["n"], bon["kl"], "o-", color="tab:red", label="measured (plug-in, N draws)")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="n", ylabel="KL(π_bon ‖ π_ref) (nats)", title="best-of-n KL")
    ax.legend(fontsize=8)
    fig.suptitle("Reward over-optimisation on the built-in world (Gao, Schulman & Hilton 2022)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


__all__ = ["table_markdown", "write_plot", "write_table"]
