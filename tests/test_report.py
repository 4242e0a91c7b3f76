"""results/README.md gathers published metrics beside the paper's numbers."""

import json

from tools.report import gather


def write_metrics(folder, scores: dict, main: str, saved_at: str | None = None) -> None:
    folder.mkdir(parents=True)
    doc = {
        "main_score": main,
        "scores": {k: {"micro_auroc": a, "macro_auroc": b} for k, (a, b) in scores.items()},
    }
    if saved_at:
        doc["checkpoint"] = {"saved_at": saved_at}
    (folder / "metrics.json").write_text(json.dumps(doc))


def test_gather_places_each_result_in_its_row(tmp_path):
    hybrid = {
        "fused": (99.5, 99.9),
        "flow_reconstruction": (98.1, 99.0),
        "frame_prediction": (93, 95),
    }
    write_metrics(tmp_path / "ped2_cpu", hybrid, "fused")
    write_metrics(
        tmp_path / "ped2_cpu_cvae", {"frame_prediction": (91.25, 92.0)}, "frame_prediction"
    )
    write_metrics(
        tmp_path / "ped2_cpu_memae", {"flow_reconstruction": (97.5, 98.0)}, "flow_reconstruction"
    )
    config = "train:\n  val_videos: ['08']\neval:\n  smoothing: medfilt\n"
    (tmp_path / "ped2_cpu" / "config.yaml").write_text(config)
    for seed, micro in enumerate((99.41, 99.62)):
        write_metrics(
            tmp_path / "ped2_cpu_stochastic" / f"seed{seed}", {"fused": (micro, 0)}, "fused"
        )
    (tmp_path / "notes.md").write_text("## Reading\nby hand\n")
    check = {"prediction (as trained)": 9.7, "prediction, zero flows": 12.4, "copy of x4": 16.8}
    check = {"rows": {k: {"mean": v, "median": v} for k, v in check.items()}}
    (tmp_path / "ped2_cpu_cvae" / "motion_check_testing.json").write_text(json.dumps(check))
    text = gather(tmp_path).read_text()
    assert text.rstrip().endswith("## Reading\nby hand")
    assert "| HF2-VAD | 99.30 | 99.50 | 99.90 | validated, medfilt |" in text
    assert "| w/o frame prediction (ML-MemAE-SC alone) | 98.80 | 97.50 | 98.00 |" in text
    assert "| w/o flow reconstruction (CVAE on the original flows, S_p) | 94.50 | 91.25 |" in text
    assert "latent divergence" not in text  # this CVAE run does not fuse S_kl
    assert "| CVAE on original flows | 94.48 | 91.25 | 92.00 |" in text
    assert "| MemAE | 96.27 | not run yet |" in text
    assert "| sampled z, 2 seed(s) (range) | 99.3065-99.3089 | 99.410-99.620 |" in text
    assert (
        "| HF2-VAD (the headline run), flow in Ped2's own pixels | 99.50 | 98.10 | 93.00 |" in text
    )
    assert "| flow in the authors' units (pixels of 1024x768 frames) | not run yet |" in text
    assert "| run | S_p micro AUROC % | as trained | zero flows |" in text
    assert "| [`ped2_cpu_cvae`](ped2_cpu_cvae/report.md) | 91.25 | 9.70 | 12.40 |" in text
    assert "References (no model): copy of x4 16.80." in text


def test_sampled_latents_of_another_model_are_not_set_beside_the_headline(tmp_path):
    write_metrics(tmp_path / "ped2_cpu", {"fused": (99.4, 99.9)}, "fused", "2026-12-07T17:18")
    for seed in (0, 1):
        folder = tmp_path / "ped2_cpu_stochastic" / f"seed{seed}"
        write_metrics(folder, {"fused": (99.6, 0)}, "fused", "2026-12-01T16:56")
    text = gather(tmp_path).read_text()
    assert "| sampled z" not in text
    assert "scored a model saved 2026-12-01T16:56, the published headline is another" in text


def test_a_run_that_fuses_s_kl_shows_the_papers_s_p_beside_it(tmp_path):
    scores = {
        "prediction_with_divergence": (96.5, 97.0),
        "frame_prediction": (93.25, 95.0),
        "latent_divergence": (92.0, 94.0),
    }
    write_metrics(tmp_path / "ped2_cpu_cvae", scores, "prediction_with_divergence")
    text = gather(tmp_path).read_text()
    assert "| w/o flow reconstruction (CVAE on the original flows, S_p) | 94.50 | 93.25 |" in text
    assert "| w/o flow reconstruction + latent divergence S_kl (ours) | – | 96.50 |" in text
    assert "| CVAE on original flows | 94.48 | 93.25 | 95.00 |" in text  # Table 2: the paper's


def test_recipe_tells_the_three_schedules_apart(tmp_path):
    from tools.published import recipe

    for name, config, expected in (
        ("validated", "train: {val_videos: ['08']}\nstage2: {num_epochs: 16}\n", "validated"),
        ("fast", "train: {val_videos: ['08']}\nstage2: {num_epochs: 3}\n", "fast"),
        ("first", "train: {val_videos: []}\nstage2: {num_epochs: 4}\n", "first"),
        (
            "original",
            "model: {type: hybrid}\ntrain: {val_videos: ['08']}\n"
            "stage2: {num_epochs: 16, cvae_flows: original}\n",
            "validated",
        ),
        (
            "border",
            "train: {val_videos: ['08']}\nstage2: {num_epochs: 3}\n"
            "preprocess: {cubes: {border_aspect: 0.7}}\n",
            "fast",
        ),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(config + "eval: {smoothing: medfilt}\n")
        suffixes = {
            "original": ", stage 2 on original flows",
            "border": ", border crops as if whole",
        }
        suffix = suffixes.get(name, "")
        assert recipe(tmp_path / name) == f"{expected}, medfilt{suffix}"
    assert recipe(tmp_path / "missing") == ""


def test_hardest_frames_ranks_normal_high_and_abnormal_low():
    from tools.report import hardest_frames

    objects = {"frame": [4, 4, 5], "box": [[0, 0, 5, 5], [1, 2, 30, 40], [0, 0, 9, 9]]}
    objects["score"] = [0.5, 2.0, 1.0]
    video = {
        "name": "01",
        "labels": [0, 0, 0, 0, 0, 1, 1],
        "smoothed_score": [None] * 4 + [3.0, 1.0, 7.0],
        "objects": objects,
    }
    unlabelled = {"name": "02", "labels": None, "smoothed_score": [9.0], "objects": objects}
    rows = hardest_frames({"videos": [video, unlabelled]}, count=1)
    assert rows[2] == "| normal, highest | 01 | 4 | 3.00 | 2 | 1 2 30 40 |"
    assert rows[3] == "| abnormal, lowest | 01 | 5 | 1.00 | 1 | 0 0 9 9 |"
    assert len(rows) == 4
