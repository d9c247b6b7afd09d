"""The README and docs/ pages link only to files that exist and to headings that exist (GitHub's
anchor rule: lower case, punctuation dropped, spaces to hyphens, -N for repeats)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "experiments" / "README.md"]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a markdown page."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        if not line.startswith("#"):
            continue
        text = line.lstrip("#").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [a or b for a, b in LINK.findall(text)]


def dead_links(page: Path) -> list[str]:
    dead = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            dead.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            dead.append(f"{target} (no such heading)")
    return dead


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_exists(page):
    dead = dead_links(page)
    assert not dead, f"{page.relative_to(ROOT)}: dead links: {', '.join(dead)}"


def test_a_dead_file_or_heading_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n## A, b & c (d)\n")
    page = tmp_path / "page.md"
    page.write_text("# Top\n[ok](other.md#a-b--c-d) [here](#top) ![img](missing.png) [x](other.md#nope)\n"
                    "[web](https://example.com) [gone](nothing.md)\n```\n[in code](ignored.md)\n```\n")
    assert dead_links(page) == ["missing.png (no such file)", "other.md#nope (no such heading)",
                                "nothing.md (no such file)"]


def test_the_anchor_rule_on_known_headings():
    assert "detecting-people-in-large-images" in anchors(ROOT / "README.md")
    assert "repulsion-loss-at-the-scale-slicing-sees-from-the-pretrained-detector-cpu" in \
        anchors(ROOT / "docs" / "results_tile_finetune.md")
    assert "crowd-copy-paste" in anchors(ROOT / "docs" / "datasets.md")
