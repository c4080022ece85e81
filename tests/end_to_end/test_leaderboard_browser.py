"""The HTML leaderboard of two runs differing in one key, rendered by a real headless browser (Chromium);
at 1280 × 800 the verdict and D dense − D global columns lie inside the viewport (issue 28, item 3).

Skips with the reason when no Chromium is installed (Debian: ``apt-get install chromium``). The
screenshot is kept under the test's tmp dir (path printed) for a person to look at.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from bench.cli import main
from tests.bench.test_leaderboard import build_runs

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> str:
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium): the HTML is checked statically only")
    return found


@pytest.fixture(scope="module")
def two_runs(browser, tmp_path_factory) -> tuple[Path, Path]:
    """Run a of tests/bench/test_leaderboard.py and the same study with one more epoch: they differ in one key."""
    a, _ = build_runs(tmp_path_factory)
    c = a.parent / "c"
    if not (c / "results.json").is_file():
        assert main(["run", str(a.parent / "lb.yaml"), "--out", str(c), "--quiet", "--restart",
                     "--set", "train.epochs=2"]) == 0
    return a, c


def chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120)


def test_leaderboard_renders_in_headless_chromium(browser, two_runs, tmp_path):
    a, c = two_runs
    page = tmp_path / "leaderboard.html"
    assert main(["leaderboard", str(a), str(c), "--format", "html", "--out", str(page)]) == 0
    dom = chromium(browser, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-sortable="2"' in dom.stdout  # the inline script ran without error and found both tables
    assert re.search(r'<details><summary>1 key</summary><div class="differs-text">train\.epochs=1(\.0)?</div>', dom.stdout)
    assert re.search(r'<details><summary>1 key</summary><div class="differs-text">train\.epochs=2(\.0)?</div>', dom.stdout)
    shot = tmp_path / "leaderboard.png"
    result = chromium(browser, tmp_path / "profile", "--window-size=1500,1100", f"--screenshot={shot}",
                      "--hide-scrollbars", page.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1500, 1100)
        gray = im.convert("L")
        assert ImageStat.Stat(gray).stddev[0] > 10  # not a blank page
        assert gray.getbbox() is not None
    print(f"screenshot: {shot}")


# Injected into a copy of the page (the page itself carries no test code): where each table's verdict and
# difference header and cells lie, and the viewport's size, written to an attribute --dump-dom shows.
PROBE = """<script>
(function () {
  var cols = [];
  document.querySelectorAll('table.lb').forEach(function (t, k) {
    var ths = Array.from(t.tHead.rows[0].cells);
    ['verdict', 'D dense \u2212 D global'].forEach(function (name) {
      var i = ths.findIndex(function (h) { return h.textContent.trim() === name; });
      var cells = [ths[i]].concat(Array.from(t.tBodies).map(function (b) { return b.rows[0].cells[i]; }));
      cells.forEach(function (c, j) {
        var r = c.getBoundingClientRect();
        cols.push({table: k, name: name, row: j, left: r.left, right: r.right, top: r.top, bottom: r.bottom});
      });
    });
  });
  document.body.setAttribute('data-probe', JSON.stringify({width: document.documentElement.clientWidth,
    height: window.innerHeight, scroll: document.documentElement.scrollWidth, cols: cols}));
})();
</script></body>"""


def test_verdict_column_is_inside_the_viewport_at_1280(browser, two_runs, tmp_path):
    a, c = two_runs
    page = tmp_path / "leaderboard.html"
    assert main(["leaderboard", str(a), str(c), "--format", "html", "--out", str(page)]) == 0
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE), encoding="utf-8")
    dom = chromium(browser, tmp_path / "profile", "--window-size=1280,800", "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert found, dom.stdout[-2000:]
    probe_data = json.loads(html.unescape(found.group(1)))
    width = probe_data["width"]
    assert 1240 <= width <= 1280, probe_data  # the window really is 1280 px wide (less a scrollbar)
    cols = probe_data["cols"]
    assert {c["name"] for c in cols} == {"verdict", "D dense \u2212 D global"} and len({c["table"] for c in cols}) == 2
    outside = [c for c in cols if c["left"] < 0 or c["right"] > width]
    assert not outside, (width, outside)  # no horizontal scrolling to see the verdict
    first = [c for c in cols if c["table"] == 0 and c["row"] <= 1]
    assert all(c["top"] >= 0 and c["bottom"] <= probe_data["height"] for c in first), first  # on the first screen
    shot = tmp_path / "leaderboard-1280.png"
    result = chromium(browser, tmp_path / "profile", "--window-size=1280,800", f"--screenshot={shot}",
                      page.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    print(f"screenshot at 1280 x 800: {shot}; table scroll width {probe_data['scroll']} px")
