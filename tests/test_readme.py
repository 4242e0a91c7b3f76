"""The results tables of README.md and results/README.md are the committed JSON's numbers."""

from pathlib import Path

from utils.report import gather_text, readme_block, readme_table

ROOT = Path(__file__).resolve().parent.parent


def test_readme_ped2_table_matches_the_committed_metrics():
    text = (ROOT / "README.md").read_text()
    start, end = readme_block(text)
    assert text[start:end].strip() == readme_table(ROOT / "results").strip(), (
        "README.md's Ped2 table differs from results/*/metrics.json: run "
        "python -m utils.report --readme README.md"
    )


def test_results_readme_matches_the_committed_metrics():
    expected = gather_text(ROOT / "results")
    assert (ROOT / "results" / "README.md").read_text() == expected, (
        "results/README.md differs from results/*: run python -m utils.report --gather results"
    )
