"""Pairwise win rates: judging in both orders, win rate with ties, length-controlled win rate.

- `pairwise_verdicts` asks a judge to compare outputs of system A and system B on each prompt
  twice, A first and B first, because LLM judges prefer a position (Zheng et al. 2023,
  "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena", Sec. 3.3/3.4). A verdict that flips
  with the order is counted as a tie.
- `win_rate`: wins + ties/2 over all comparisons, with a Wilson interval.
- `length_controlled_win_rate`: the AlpacaEval 2 length-controlled win rate (Dubois, Galambosi,
  Liang & Hashimoto 2024, "Length-Controlled AlpacaEval: A Simple Way to Debias Automatic
  Evaluators"), without the per-instruction difficulty term (see its docstring).

    >>> win_rate(["a", "a", "b", "tie"]).value
    0.625
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from alignkit.errors import DataError
from alignkit.evals.stats import Z95, RateEstimate, rate

JUDGE_ANSWERS = ("first", "second", "tie")
VERDICTS = ("a", "b", "tie")


@dataclass
class PairwiseResult:
    """Verdicts per prompt ("a", "b" or "tie") plus the raw judge answers in both orders."""

    verdicts: list[str]
    ab: list[str] = field(default_factory=list)  # judge(prompt, a, b) per prompt
    ba: list[str] = field(default_factory=list)  # judge(prompt, b, a) per prompt
    n_inconsistent: int = 0  # prompts whose two verdicts disagreed (counted as ties)


def _check_answer(ans: object, i: int, order: str) -> str:
    if ans not in JUDGE_ANSWERS:
        raise ValueError(f"judge answered {ans!r} for prompt {i} ({order}); expected one of "
                         f"{JUDGE_ANSWERS}")
    return ans  # type: ignore[return-value]


def pairwise_verdicts(judge: Callable[[str, str, str], str], prompts: Sequence[str],
                      a_outputs: Sequence[str], b_outputs: Sequence[str]) -> PairwiseResult:
    """Judge every (prompt, a, b) in both orders; inconsistent verdicts become ties.

    judge(prompt, first, second) -> "first" | "second" | "tie".
    Order AB: "first" means A wins. Order BA: "second" means A wins. The per-prompt verdict is
    "a" / "b" / "tie" when both orders agree, else "tie" (and it counts in `n_inconsistent`).

        >>> always_first = lambda p, x, y: "first"      # pure position bias
        >>> pairwise_verdicts(always_first, ["q"], ["A"], ["B"]).verdicts
        ['tie']
    """
    if not len(prompts) == len(a_outputs) == len(b_outputs):
        raise ValueError(f"prompts, a_outputs and b_outputs must have the same length, got "
                         f"{len(prompts)}, {len(a_outputs)}, {len(b_outputs)}")
    to_ab = {"first": "a", "second": "b", "tie": "tie"}
    to_ba = {"first": "b", "second": "a", "tie": "tie"}
    out = PairwiseResult(verdicts=[])
    for i, (p, a, b) in enumerate(zip(prompts, a_outputs, b_outputs)):
        ab = _check_answer(judge(p, a, b), i, "A first")
        ba = _check_answer(judge(p, b, a), i, "B first")
        out.ab.append(ab)
        out.ba.append(ba)
        v1, v2 = to_ab[ab], to_ba[ba]
        if v1 == v2:
            out.verdicts.append(v1)
        else:
            out.verdicts.append("tie")
            out.n_inconsistent += 1
    return out


def win_rate(verdicts: Sequence[str] | PairwiseResult, z: float = Z95) -> RateEstimate:
    """Win rate of A: (wins + ties/2) / n, with a Wilson interval on that fractional count.

    Counting a tie as half a win is the AlpacaEval / Chatbot Arena convention; the Wilson
    interval on k = wins + ties/2 is then approximate (ties make the count non-binomial; the
    interval is slightly conservative when there are many ties).

        >>> e = win_rate(["a", "b", "tie", "tie"]); e.k, e.n, e.value
        (2.0, 4, 0.5)
    """
    vs = verdicts.verdicts if isinstance(verdicts, PairwiseResult) else list(verdicts)
    for i, v in enumerate(vs):
        if v not in VERDICTS:
            raise ValueError(f"verdicts[{i}] = {v!r}; expected one of {VERDICTS}")
    k = sum(1.0 if v == "a" else 0.5 if v == "tie" else 0.0 for v in vs)
    return rate(k, len(vs), z)


@dataclass(frozen=True)
class LengthControlledWinRate:
    """Result of `length_controlled_win_rate`."""

    value: float  # σ(θ): predicted win rate of A with the length term set to zero
    raw: float  # plain win rate, ties = 1/2
    theta: float  # intercept: quality difference A − B on the logit scale
    phi: float  # weight of tanh(Δlen / sd(Δlen)); > 0 means the judge favours longer outputs
    n: int
    length_scale: float  # sd(Δlen) used to normalise (population sd), 0 if all Δlen equal


def _preference(value: object, line: int, file: str | None, key: str) -> float:
    named = {"a": 1.0, "b": 0.0, "tie": 0.5}
    if isinstance(value, str) and value in named:
        return named[value]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 0.5, 1):
        return float(value)
    if isinstance(value, bool):
        return float(value)
    raise DataError(f"expected 1/0/0.5, true/false or 'a'/'b'/'tie', got {value!r}", file=file,
                    line=line, field=key)


def _length(value: object, line: int, file: str | None, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise DataError(f"expected a non-negative length, got {value!r}", file=file, line=line,
                        field=key)
    return float(value)


def length_controlled_win_rate(records: Sequence[Mapping], *, pref_key: str = "preference",
                               len_a_key: str = "len_a", len_b_key: str = "len_b",
                               l2: float = 0.0, file: str | None = None,
                               max_iter: int = 100) -> LengthControlledWinRate:
    """Length-controlled win rate of A against B (Dubois et al. 2024, AlpacaEval 2 LC).

    Each record: `preference` (1 = A better, 0 = B better, 0.5 = tie; or "a"/"b"/"tie"),
    `len_a`, `len_b` (output lengths in any unit: characters, tokens, words).

    Model: logit P(A ≻ B | i) = θ + φ · tanh(Δ_i / s), Δ_i = len_a − len_b, s = sd(Δ) (the
    population standard deviation over the records; Dubois et al. Eq. 2 uses the same
    tanh(Δ/sd) feature). θ and φ are fitted by maximum likelihood with soft labels (a tie is
    half a win and half a loss) using Newton's method (IRLS, exact for this 2-parameter convex
    problem), plus an optional ridge penalty l2/2·(θ² + φ²). The LC win rate is σ(θ): the win
    rate the model predicts when the outputs have equal length.

    Deliberate simplification: Dubois et al. also fit a per-instruction difficulty term
    (ψ·γ_x), which needs many systems on the same instructions; with one pair of systems it is
    not identifiable, so it is left out.

    If all Δ are equal the length feature is constant, so it cannot be told apart from θ; φ is
    then fixed at 0 and the result is the raw win rate on the logit scale. Perfectly
    separable preferences (e.g. A wins all) make θ infinite: with l2 = 0 the function returns
    the limit when all preferences are equal and raises otherwise (use l2 > 0).

        >>> recs = [{"preference": 1, "len_a": 20, "len_b": 10}] * 4 + \\
        ...        [{"preference": 0, "len_a": 10, "len_b": 20}] * 4
        >>> r = length_controlled_win_rate(recs, l2=1e-3); round(r.raw, 2), round(r.value, 2)
        (0.5, 0.5)
    """
    if not records:
        raise ValueError("records is empty")
    y = np.empty(len(records))
    delta = np.empty(len(records))
    for i, rec in enumerate(records):
        line = i + 1
        if not isinstance(rec, Mapping):
            raise DataError(f"expected an object, got {type(rec).__name__}", file=file, line=line)
        for key in (pref_key, len_a_key, len_b_key):
            if key not in rec:
                raise DataError("missing", file=file, line=line, field=key)
        y[i] = _preference(rec[pref_key], line, file, pref_key)
        delta[i] = (_length(rec[len_a_key], line, file, len_a_key)
                    - _length(rec[len_b_key], line, file, len_b_key))
    n = len(records)
    raw = float(y.mean())
    scale = float(delta.std())
    if scale > 0:
        x = np.stack([np.ones(n), np.tanh(delta / scale)], axis=1)  # (N, 2)
    else:
        x = np.ones((n, 1))  # (N, 1): intercept only
    if l2 == 0 and raw in (0.0, 1.0):
        return LengthControlledWinRate(value=raw, raw=raw, theta=math.copysign(math.inf, raw - .5),
                                       phi=0.0, n=n, length_scale=scale)
    def loss(w: np.ndarray) -> float:
        # mean-free NLL with soft labels: Σ log(1 + e^z) − y·z, z = x·w; plus the ridge term.
        z = x @ w
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * (w @ w))

    w = np.zeros(x.shape[1])
    f = loss(w)
    converged = False
    for _ in range(max_iter):
        p = 0.5 * (1.0 + np.tanh(x @ w / 2.0))  # σ(xw), (N,)
        grad = x.T @ (p - y) + l2 * w  # (D,)
        hess = x.T @ (x * (p * (1 - p))[:, None]) + l2 * np.eye(x.shape[1])  # (D, D)
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            step = grad  # singular Hessian (saturated σ): fall back to a gradient step
        t = 1.0
        while t > 1e-10 and not loss(w - t * step) <= f:  # backtracking keeps the loss falling
            t /= 2.0
        w = w - t * step
        f = loss(w)
        if np.abs(t * step).max() < 1e-10:
            converged = True
            break
    # |w| > 30 means fitted probabilities within 1e-13 of 0 or 1: the optimum is at infinity
    # (separable data) and the iterate only stopped because σ saturated in float64.
    if not converged or not np.all(np.isfinite(w)) or np.abs(w).max() > 30:
        raise ValueError(f"the fit did not converge in {max_iter} Newton steps (w = {w}); the "
                         "preferences are probably (almost) separable by the length feature; "
                         "pass l2 > 0 (e.g. 1e-3) to regularise")
    theta = float(w[0])
    phi = float(w[1]) if w.size > 1 else 0.0
    value = 0.5 * (1.0 + math.tanh(theta / 2.0))
    return LengthControlledWinRate(value=value, raw=raw, theta=theta, phi=phi, n=n,
                                   length_scale=scale)
