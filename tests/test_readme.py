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


def test_ceiling_text_reads_the_reference_benchmark(tmp_path):
    """The generated ceiling sentence from a bench_reference JSON with every kind of row."""
    from tools.readme import ceiling_readme_text
    from utils.io import write_json

    results = [
        {"name": "reference float32", "unit": "cubes", "per_second": 40.0},
        {"name": "ours openvino float32", "unit": "cubes", "per_second": 70.0},
        {"name": "ours openvino bf16", "unit": "cubes", "per_second": 300.0},
        {"name": "ours/reference float32", "ratio": 1.75},
        {"name": "GFLOP per cube (dense memory read)", "gflop": 4.0},
        {"name": "matmul 2048^3 float32", "unit": "GFLOP", "per_second": 320.0},
        {"name": "matmul 2048^3 bfloat16", "unit": "GFLOP", "per_second": 2400.0},
    ]
    write_json(
        tmp_path / "bench" / "results" / "bench_reference_2threads.json", {"results": results}
    )
    text = ceiling_readme_text(tmp_path / "results")
    assert "ours openvino float32 (70 cubes/s) computes 280 GFLOP/s, 88% of" in text
    assert "ours openvino bf16 (300 cubes/s) computes 1200 GFLOP/s, 50% of" in text


def test_standin_text_cites_the_headlines_fast_twin_when_there_is_one(tmp_path):
    from tools.readme import standin_readme_text
    from utils.io import write_json

    def standin(folder, name, **micro):
        scores = {key: {"micro_auroc": value} for key, value in micro.items()}
        (tmp_path / folder).mkdir(exist_ok=True)
        write_json(tmp_path / folder / name, {"scores": scores})

    standin(
        "ped2_cpu",
        "pixels_standin.json",
        fused=67.6,
        appearance=76.5,
        fused_without_appearance=57.7,
    )
    standin("ped2_cpu_fast", "standin.json", appearance=93.5)
    assert "ped2_cpu_recon4" not in standin_readme_text(tmp_path)
    standin("ped2_cpu_recon4", "standin.json", fused=77.9, fused_without_appearance=60.2)
    text = standin_readme_text(tmp_path)
    assert "scores 77.9 % on the stand-in fused with S_a and 60.2 % with the paper's" in text
