"""The report in a real browser (Debian chromium driven by playwright, no downloaded browser).

Checks: the page logs no console error (a CSP violation would be one: the page allows only its
own hashed style and script), fetches nothing but its own file, raises no dialog (the malicious
sample stays text), has every section, the slice filter hides rows, and a screenshot of it is
not blank. Skipped, with the reason, when chromium or playwright is missing.

Install here: `apt-get install -y chromium` (Debian 12) and `pip install playwright==1.65.2`
(never `playwright install`: the system chromium is used).
"""
from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from alignkit.report import build_report
from alignkit.report.sections import SECTION_IDS

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
NON_WHITE_MIN_SHARE = 0.02  # a blank page has 0; the fixture report's first screen measured 0.065


# ----------------------------------------------------------------------------- PNG without PIL

def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def decode_png(data: bytes) -> np.ndarray:
    """8-bit, non-interlaced grey / RGB / RGBA PNG -> (H, W, C) uint8 array.

    PNG spec (W3C, 2003) §9: each scanline starts with a filter byte; 0 None, 1 Sub (add the
    byte bpp to the left), 2 Up (add the byte above), 3 Average (add floor((left + up) / 2)),
    4 Paeth (add the one of left, up, upper-left closest to left + up - upper-left).
    Sub and Up are vectorised with numpy; Average and Paeth need the reconstructed left byte,
    so they loop in Python (fine for one screen).
    """
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos, idat, header = 8, bytearray(), None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    assert header is not None, "PNG has no IHDR chunk"
    width, height, depth, colour, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}")
    raw = zlib.decompress(bytes(idat))
    bpp, stride = channels, width * channels
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        start = y * (stride + 1)
        ftype = raw[start]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=start + 1)
        if ftype == 0:
            row = line.copy()
        elif ftype == 1:  # cumulative sum along pixels, per channel, mod 256
            row = (np.cumsum(line.reshape(width, bpp).astype(np.uint64), axis=0) % 256) \
                .astype(np.uint8).reshape(stride)
        elif ftype == 2:
            row = line + prev  # uint8 arithmetic wraps mod 256, as the spec wants
        elif ftype in (3, 4):
            row_l = bytearray(line.tobytes())
            up = prev.tobytes()
            for x in range(stride):
                left = row_l[x - bpp] if x >= bpp else 0
                if ftype == 3:
                    row_l[x] = (row_l[x] + ((left + up[x]) >> 1)) & 255
                else:
                    upleft = up[x - bpp] if x >= bpp else 0
                    row_l[x] = (row_l[x] + _paeth(left, up[x], upleft)) & 255
            row = np.frombuffer(bytes(row_l), dtype=np.uint8)
        else:
            raise ValueError(f"row {y}: unknown PNG filter type {ftype}")
        out[y] = row
        prev = row
    return out.reshape(height, width, channels)


def non_white_share(pixels: np.ndarray) -> float:
    """Share of pixels with any colour channel below 245 (anti-aliased white counts as white)."""
    rgb = pixels[..., :3] if pixels.shape[2] >= 3 else pixels
    return float((rgb < 245).any(axis=2).mean())


def _png(width: int, rows: list[tuple[int, bytes]], colour: int = 2) -> bytes:
    """A PNG from pre-filtered rows [(filter type, filtered bytes)] — to test the decoder."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    raw = b"".join(bytes([f]) + r for f, r in rows)
    ihdr = struct.pack(">IIBBBBB", width, len(rows), 8, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def test_png_decoder_undoes_each_filter_type():
    """Grey 2x5 image, one row per filter type, values worked out by hand.

    row0 None:    [10, 20]                          -> [10, 20]
    row1 Sub:     [5, 250]: 5, 250+5 = 255          -> [5, 255]
    row2 Up:      [1, 2] + row1 [5, 255]: 6, 257%256 -> [6, 1]
    row3 Average: [4, 4]: 4 + floor((0+6)/2) = 7; 4 + floor((7+1)/2) = 8 -> [7, 8]
    row4 Paeth:   [1, 1]: x0: left=0, up=7, ul=0 -> p=7, |7-0|=7, |7-7|=0 -> up: 1+7 = 8
                          x1: left=8, up=8, ul=7 -> p=9, pa=1, pb=1, pc=2 -> left: 1+8 = 9 -> [8, 9]
    """
    png = _png(2, [(0, bytes([10, 20])), (1, bytes([5, 250])), (2, bytes([1, 2])),
                   (3, bytes([4, 4])), (4, bytes([1, 1]))], colour=0)
    assert decode_png(png)[..., 0].tolist() == [[10, 20], [5, 255], [6, 1], [7, 8], [8, 9]]


def test_non_white_share_counts_dark_pixels():
    """4 RGB pixels: white, near-white (250), grey (100), black -> 2 of 4 are non-white = 0.5."""
    px = np.array([[[255, 255, 255], [250, 250, 250], [100, 100, 100], [0, 0, 0]]], dtype=np.uint8)
    assert non_white_share(px) == 0.5


# ----------------------------------------------------------------------------- the browser

def _chromium_or_skip():
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(f"chromium is not installed ({CHROMIUM} missing; Debian: apt-get install -y chromium)")
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


def test_report_renders_in_chromium_without_errors(runs, tmp_path):
    executable = _chromium_or_skip()
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install playwright)")
    out = build_report([runs["sft"], runs["dpo"], runs["guard"]], tmp_path / "report.html")
    url = out.resolve().as_uri()
    console, errors, dialogs, requests = [], [], [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: console.append((m.type, m.text)))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url, wait_until="load")

            missing = [sid for sid in SECTION_IDS if page.locator(f"section#{sid} > h2").count() != 1]
            assert missing == []

            # The safety failures (weapons, privacy): filtering on weapons leaves 1 row visible.
            select = page.locator("#failures select.slice-filter").filter(
                has=page.locator("option[value='category=weapons']"))
            table_id = select.get_attribute("data-target")
            assert page.locator(f"#{table_id} tbody tr:visible").count() == 2
            select.select_option("category=weapons")
            assert page.locator(f"#{table_id} tbody tr:visible").count() == 1
            assert "1 shown" in page.locator(f"#{select.get_attribute('data-counter')}").inner_text()
            # The malicious prompt is on screen as text, not as a script.
            assert page.get_by_text("<script>alert(1)</script>").count() == 1

            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert [m for m in console if m[0] == "error"] == [] and errors == []
    assert dialogs == []
    assert requests == [url]  # the page itself and nothing else
    share = non_white_share(decode_png(shot.read_bytes()))
    assert share > NON_WHITE_MIN_SHARE, f"screenshot looks blank: {share:.4f} non-white"
