"""svg: tick arithmetic, element counts, pixel positions, labels and escaping."""
from __future__ import annotations

import re

import pytest

from alignkit.report.svg import (Bar, Point, Series, format_tick, hbar_chart, line_chart,
                                 nice_number, nice_ticks, pr_chart, roc_chart, scatter_chart)


@pytest.mark.parametrize("lo, hi, kw, expected", [
    # range 1 -> nice 1; step nice(1/4 = 0.25, round) = 0.2 (f = 2.5 < 3 -> 2)
    (0.0, 1.0, {}, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    # range 7.3 -> nice ceil 10; step nice(2.5) = 2; floor(0/2) = 0 .. ceil(7.3/2) = 4 -> 0..8
    (0.0, 7.3, {}, [0.0, 2.0, 4.0, 6.0, 8.0]),
    # zero width: widened by 10% to 2.7..3.3; range 0.6 -> 1.0; step 0.25 -> 0.2;
    # floor(2.7/0.2) = 13 -> 2.6, ceil(3.3/0.2) = 17 -> 3.4
    (3.0, 3.0, {}, [2.6, 2.8, 3.0, 3.2, 3.4]),
    # steps 1..3: range 2, step nice(0.5) = 0.5, raised to 1 for integer axes
    (1.0, 3.0, {"integer": True}, [1.0, 2.0, 3.0]),
    # negative values: range 3 -> 5; step nice(1.25) = 1; -2..1
    (-1.5, 1.5, {}, [-2.0, -1.0, 0.0, 1.0, 2.0]),
])
def test_nice_ticks(lo, hi, kw, expected):
    assert nice_ticks(lo, hi, **kw) == expected


def test_nice_number_rounding_and_ceiling():
    # 0.034 = 3.4e-2: rounding -> 5 (3 <= f < 7) -> 0.05; ceiling -> 5 (f <= 5) -> 0.05
    # 120 = 1.2e2: rounding -> 1 -> 100; ceiling -> 2 -> 200
    assert (nice_number(0.034, True), nice_number(0.034, False)) == (0.05, 0.05)
    assert (nice_number(120, True), nice_number(120, False)) == (100, 200)


def test_format_tick_uses_the_step_decimals():
    assert [format_tick(v, 0.2) for v in (0.0, 0.4, 1.0)] == ["0", "0.4", "1.0"]
    assert format_tick(500.0, 100.0) == "500"


def test_line_chart_counts_labels_and_positions():
    svg = line_chart([Series("sft", [0.0, 0.5, 1.0], [0.0, 0.5, 1.0]),
                      Series("val", [0.5], [0.25], dashed=True)],
                     title="Loss", x_label="step", y_label="loss (nats)",
                     x_domain=(0.0, 1.0), y_domain=(0.0, 1.0))
    assert svg.count('class="series"') == 2
    assert svg.count('class="legend-item"') == 2
    assert re.findall(r'class="axis-label"[^>]*>([^<]*)<', svg) == ["step", "loss (nats)"]
    assert svg.count('stroke-dasharray="5 3"') == 2  # the dashed series and its legend line
    # Plot area x: 62 .. 440 - 14 = 426 (364 px); y: 270 - 46 = 224 (bottom) .. 30 (top), 194 px.
    # (0.5, 0.5) -> x = 62 + 0.5 * 364 = 244.0, y = 224 - 0.5 * 194 = 127.0
    assert "244.0,127.0" in svg
    # The lone validation point gets a marker: (0.5, 0.25) -> y = 224 - 0.25 * 194 = 175.5
    assert 'cx="244.0" cy="175.5"' in svg


def test_line_chart_skips_non_finite_points_and_says_no_data_when_empty():
    svg = line_chart([Series("a", [1, 2, 3], [1.0, float("nan"), 3.0])],
                     title="t", x_label="x", y_label="y")
    points = re.search(r'class="series"[^>]*points="([^"]*)"', svg).group(1).split()
    assert len(points) == 2
    empty = line_chart([Series("a", [1], [float("inf")])], title="t", x_label="x", y_label="y")
    assert 'class="no-data"' in empty and 'class="series"' not in empty


def test_scatter_chart_points_errorbars_and_labels():
    svg = scatter_chart([Point("dpo", 0.1, 0.25, 0.05, 0.2, 0.1, 0.5),
                         Point("sft", 0.3, 0.6, y_lo=0.5, y_hi=0.7),
                         Point("base", 0.5, 0.9)],
                        title="Frontier", x_label="benign refusal (share)",
                        y_label="attack success (share)", x_domain=(0, 1), y_domain=(0, 1))
    assert svg.count('class="point"') == 3
    assert svg.count('class="errorbar"') == 3  # dpo: x and y; sft: y only; base: none
    assert re.findall(r'class="point-label"[^>]*>([^<]*)<', svg) == ["dpo", "sft", "base"]
    # dpo at x = 62 + 0.1 * 364 = 98.4, y = 224 - 0.25 * 194 = 175.5
    assert 'cx="98.4" cy="175.5"' in svg
    # its x error bar spans 62 + 0.05 * 364 = 80.2 .. 62 + 0.2 * 364 = 134.8
    assert 'x1="80.2" y1="175.5" x2="134.8" y2="175.5"' in svg


def test_hbar_chart_bars_whiskers_and_widths():
    svg = hbar_chart([Bar("a", 0.5, 0.3, 0.7, group="r1"), Bar("b", 0.25, group="r1"),
                      Bar("c", 1.0, 0.8, 1.0, group="r2")],
                     title="by slice", x_label="rate (share)", x_domain=(0.0, 1.0))
    assert svg.count('class="bar"') == 3
    assert svg.count('class="whisker"') == 2 and svg.count('class="whisker-cap"') == 4
    assert svg.count('class="legend-item"') == 2  # two groups
    # Labels are one character: width 6.2 + 12 < 62, so the plot starts at x = 62 and ends at
    # 500 - 56 = 444 (382 px). Bar "a" = 0.5 -> width 191.0; bar "b" = 0.25 -> 95.5.
    widths = re.findall(r'class="bar" x="62.0" y="[^"]*" width="([^"]*)"', svg)
    assert widths == ["191.0", "95.5", "382.0"]
    assert re.findall(r'class="axis-label"[^>]*>([^<]*)<', svg) == ["rate (share)"]


def test_text_from_files_is_escaped():
    evil = '<img src=x onerror="alert(1)">'
    for svg in (line_chart([Series(evil, [1, 2], [1, 2])], title=evil, x_label=evil, y_label="y"),
                scatter_chart([Point(evil, 0.5, 0.5)], title="t", x_label="x", y_label="y"),
                hbar_chart([Bar(evil, 0.5, group=evil)], title="t", x_label="x")):
        assert "<img" not in svg and "&lt;img" in svg


def test_roc_and_pr_charts_have_fixed_unit_axes():
    roc = roc_chart([Series("guard", [0, 0.1, 1], [0, 0.8, 1])])
    assert roc.count('class="reference"') == 1  # the chance diagonal
    assert "false positive rate" in roc and "true positive rate" in roc
    # Axis runs 0..1 whatever the data: the tick labels are 0, 0.2, ..., 1.0 on each axis.
    assert re.findall(r'class="tick"[^>]*>([^<]*)<', roc) == ["0", "0.2", "0.4", "0.6", "0.8", "1.0"] * 2
    pr = pr_chart([Series("guard", [0.5, 1], [1, 0.5])])
    assert "recall" in pr and "precision" in pr and 'class="reference"' not in pr
