"""The HTML leaderboard of two runs differing in one key, rendered by a real headless browser (Chromium).

Skips with the reason when no Chromium is installed (Debian: ``apt-get install chromium``). The
screenshot is kept under the test's tmp dir (path printed) for a person to look at.
"""

from __future__ import annotations

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
    assert re.search(r'<td class="differs">train\.epochs=1(\.0)?</td>', dom.stdout)
    assert re.search(r'<td class="differs">train\.epochs=2(\.0)?</td>', dom.stdout)
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
