"""``misalign report``: a self-contained page from any results files, checked in a real browser
(Debian's chromium, headless, driven by Playwright), and the same headline in the terminal."""

from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path

import pytest

import misalign
from misalign.data.components import PARTITION
from tests.collect_support import cli

BROWSER_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]


def chromium() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or \
        shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def files(small_fit, tmp_path_factory):
    from misalign.data.simulate_experts import simulate_experts

    d = tmp_path_factory.mktemp("report")
    e1 = small_fit.save(d / "results.nc")
    ratings, _ = simulate_experts(n_teachers=40, dimensions=("A", "B"), seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        g = misalign.fit_gstudy(ratings, draws=200, tune=200, chains=2, progressbar=False)
    return e1, g.save(d / "gstudy.nc")


@pytest.fixture(scope="module")
def page(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "report.html"
    r = cli("report", str(files[0]), str(files[1]), "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_the_page_is_self_contained(page):
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html), "fetches from the network"
    images = re.findall(r"<img ([^>]*)>", html)
    assert len(images) >= 6
    for attrs in images:
        assert 'src="data:image/png;base64,' in attrs and re.search(r'alt="[^"]{10,}"', attrs)
    assert html.count("<figcaption>") == len(images)
    for title in ("How far LLM ratings drift", "which way each LLM and prompt leans",
                  "Expert reliability", "Diagnostics", "Provenance", "Which column to read"):
        assert title in html


def test_markdown_keeps_its_figures_beside_it(files, tmp_path):
    out = tmp_path / "report.md"
    r = cli("report", str(files[0]), "--format", "md", "--out", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", text)
    assert linked and all((tmp_path / p).stat().st_size > 0 for p in linked)
    assert "| component | finite-pop share [94% HDI] |" in text


def test_the_terminal_ends_with_the_reports_headline(files):
    res = misalign.load(files[0])
    r = cli("summary", str(files[0]), env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == res.headline
    assert res.headline.startswith("Of the spread of LLM errors, ")
    g = cli("summary", str(files[1]), env={"COLUMNS": "200"})
    assert g.stdout.strip().splitlines()[-1] == misalign.load(files[1]).headline


def test_in_a_real_browser(page, files, tmp_path):
    exe = chromium()
    if exe is None:
        if os.environ.get("MISALIGN_REQUIRE_BROWSER"):
            pytest.fail("chromium not found, and MISALIGN_REQUIRE_BROWSER is set (.ci/run)")
        pytest.skip("chromium not installed (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=BROWSER_FLAGS)
        tab = browser.new_page(viewport={"width": 1200, "height": 900})
        tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: problems.append(str(e)))
        tab.on("request", lambda q: None if q.url.startswith(("file:", "data:"))
               else problems.append(f"request to {q.url}"))
        tab.goto(page.as_uri(), wait_until="load")
        loaded = tab.evaluate("Array.from(document.images).map(i => [i.complete, "
                              "i.naturalWidth, i.alt])")
        numbers = tab.evaluate(
            "Array.from(document.querySelectorAll('#at-a-glance [data-part=r1] .number'))"
            ".map(s => [s.dataset.key, s.dataset.mean, s.dataset.lower, s.dataset.upper, "
            "s.textContent])")
        shot = tab.screenshot(path=str(tmp_path / "first-screen.png"))
        browser.close()
    assert not problems, problems
    assert loaded and all(ok and width > 0 and alt for ok, width, alt in loaded), loaded
    assert len(shot) > 10_000
    # The headline numbers on the page are the results file's own.
    table = misalign.load(files[0]).table
    agg = table[table["kind"] == "aggregate"].set_index("name")
    partition = [a for a in PARTITION if a in agg.index]
    assert [n[0] for n in numbers][:len(partition)] == partition
    for key, mean, lower, upper, text in numbers:
        row = agg.loc[key]
        assert (float(mean), float(lower), float(upper)) == (
            row["finite_mean"], row["finite_lower"], row["finite_upper"])
        assert text == (f"{100 * row['finite_mean']:.0f}% [{100 * row['finite_lower']:.0f}–"
                        f"{100 * row['finite_upper']:.0f}%]")
    target = os.environ.get("MISALIGN_SCREENSHOT")
    if target:  # docs/report.png is made this way (README)
        Path(target).write_bytes(shot)
