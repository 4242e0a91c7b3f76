"""The results tables of README.md and results/README.md are the committed JSON's numbers."""

from pathlib import Path

import pytest

from tools.readme import README_TABLES, readme_block
from tools.report import gather_text

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(README_TABLES))
def test_readme_tables_match_the_committed_metrics(name):
    text = (ROOT / "README.md").read_text()
    start, end = readme_block(text, name)
    assert text[start:end].strip() == README_TABLES[name](ROOT / "results").strip(), (
        f"README.md's generated {name} differs from results/: run "
        "python -m tools.report --readme README.md"
    )


def test_results_readme_matches_the_committed_metrics():
    expected = gather_text(ROOT / "results")
    assert (ROOT / "results" / "README.md").read_text() == expected, (
        "results/README.md differs from results/*: run python -m tools.report --gather results"
    )
