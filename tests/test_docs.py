"""The documentation stays true: every relative link resolves, and CI runs the README's test
command verbatim."""

import re

from tests.conftest import REPO


def test_every_relative_link_resolves():
    pages = [REPO / "README.md", REPO / "ARCHITECTURE.md", *sorted((REPO / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+://", target):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    command = 'python -m pip install -e ".[test]" && python -m pytest -m "not slow"'
    assert command in readme and command in (REPO / ".ci" / "run").read_text()
