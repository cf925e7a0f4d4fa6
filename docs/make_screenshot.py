"""Make docs/report.png, the first screen of the report that README shows.

    misalign fit --out /tmp/results.nc && misalign report /tmp/results.nc --out /tmp/report.html
    python docs/make_screenshot.py /tmp/report.html docs/report.png

Needs Debian's chromium (apt-get install chromium) and playwright (the test extra).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def main(page: str, out: str) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
        tab = browser.new_page(viewport={"width": 1100, "height": 820})
        tab.goto(Path(page).resolve().as_uri(), wait_until="load")
        tab.screenshot(path=out)
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
