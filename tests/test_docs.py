"""README.md is a front page and docs/ holds the rest: short, every local link resolves, CI runs its test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_readme_examples import fenced_blocks, pages

README_MAX_LINES = 200
# The pages the README's content moved to; each must exist and be linked from the README.
TOPIC_PAGES = ("factory.md", "serving-and-api.md", "experiments-and-fidelity.md", "remote-and-scale-out.md",
               "classifiers.md", "configuration.md", "development.md", "shell.md", "ARCHITECTURE.md", "SCALE_OUT.md")


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
            for title in re.findall(r"^#{1,6}\s+(.+)$", text, re.M)}


def local_links(page: Path) -> list[str]:
    """The targets of a page's markdown links that are not web addresses (code blocks left out)."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]


def test_readme_is_a_front_page():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines: move detail into docs/"


def test_readme_links_every_topic_page():
    linked = {Path(t.split("#")[0]).name for t in local_links(REPO / "README.md")}
    assert set(TOPIC_PAGES) <= linked, set(TOPIC_PAGES) - linked
    assert all((REPO / "docs" / name).is_file() for name in TOPIC_PAGES)


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_every_local_link_resolves(page):
    broken = []
    for target in local_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in heading_anchors(resolved):
            broken.append(f"{target}: no heading '{anchor}' in {resolved.name}")
    assert broken == [], f"{page.name}: {broken}"


def test_ci_runs_the_test_command_the_readme_gives():
    """.ci/run is "the same command README.md gives a newcomer": the README's `make test` line."""
    shown = [line.split("#")[0].strip() for language, body in fenced_blocks(REPO / "README.md")
             if language == "bash" for line in body.splitlines() if line.startswith("make test")]
    assert shown == ["make test"]
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == shown[0]
