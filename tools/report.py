"""Publish finished runs under results/: copy what eval wrote, generate report.md, and gather
every published result into results/README.md (paper vs ours).

    python -m tools.report --run runs/ped2_cpu --out results/ped2_cpu [--notes notes.md]
    python -m tools.report --gather results

Every number in report.md is read from the run's files (eval/metrics.json, pipeline_times.json,
the resolved config); `--notes` appends a hand-written analysis section, which should name the
command behind any number it quotes. results/README.md is read from results/*/metrics.json.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
from collections.abc import Callable
from pathlib import Path

import yaml

from datasets.frames import Video, list_videos
from engine.run_dir import RunLayout
from tools.published import (
    DIVERGENCE,
    OPTIONAL_SCORES,
    PAPER_FUSION,
    RECON_WARP,
    WITH_S_A,
    fmt2,
    published_score,
    recipe,
    score_label,
)
from tools.readme import update_readme
from utils.cli import run_cli
from utils.config import as_config
from utils.io import atomic_write_text, read_json
from utils.plots import plot_frames_with_boxes

# Published Ped2 micro AUROC (%) per config name (docs/method.md §7): (table and row, value).
PAPER_PED2 = {
    "ped2_cpu": ("Table 1 / Table 2 hybrid, HF2-VAD", 99.31),
    "ped2_cpu_fast": ("Table 2 hybrid, HF2-VAD, fast recipe (beside the fast hybrids)", 99.31),
    "ped2_cpu_memae": ("Table 2, ML-MemAE-SC 3 memories", 98.81),
    "ped2_cpu_memae2": ("Table 2, ML-MemAE-SC 2 memories", 97.75),
    "ped2_cpu_memae_plain": ("Table 2, MemAE", 96.27),
    "ped2_cpu_vae": ("Table 2, VAE (frames only)", 89.96),
    "ped2_cpu_cvae": ("Table 2, CVAE on original flows", 94.48),
    "ped2_cpu_hybrid_memae_plain": ("Table 2, MemAE + CVAE", 96.91),
    "ped2_cpu_hybrid_memae2": ("Table 2, ML-MemAE-SC 2 memories + CVAE", 98.28),
    "ped2_cpu_recon1": ("Table 3, 1 flow reconstructed", 98.70),
    "ped2_cpu_recon2": ("Table 3, 2 flows reconstructed", 98.92),
    "ped2_cpu_recon3": ("Table 3, 3 flows reconstructed", 99.25),
    "ped2_cpu_recon4": ("Table 3, 4 flows reconstructed (HF2-VAD, trained as rows 1-3)", 99.31),
}
EVAL_FILES = (
    "metrics.json",
    "standin.json",
    "scores.json",
    "config.yaml",
    "roc.png",
    "objects_highest.png",
    "objects_lowest.png",
)


def auroc_rows(metrics: dict, paper: tuple[str, float] | None) -> list[str]:
    """Micro / macro AUROC rows: every score of the run, the baseline, the paper's row."""
    first = next(iter(metrics["scores"].values()))
    lines = [
        f"| score (labelled test videos: {first['num_labelled_videos']}, "
        f"{first['num_scored_frames']} frames, {first['num_abnormal_frames']} abnormal) "
        "| micro AUROC % | macro AUROC % |",
        "|---|---|---|",
    ]
    for name, s in metrics["scores"].items():
        label = score_label(name, s)
        if name == metrics["main_score"]:
            label = f"**ours, {label.removesuffix(' (ours)')}**"
        lines.append(f"| {label} | {fmt2(s['micro_auroc'])} | {fmt2(s['macro_auroc'])} |")
    base = metrics["baseline_flow_magnitude"]
    lines.append(
        f"| flow-magnitude baseline (same cubes and protocol) | {fmt2(base['micro_auroc'])} | "
        f"{fmt2(base['macro_auroc'])} |"
    )
    if paper is not None:
        lines.append(f"| paper, {paper[0]} (all 12 test videos) | {paper[1]:.2f} | – |")
    return lines


def per_video_table(metrics: dict) -> list[str]:
    """Per-video AUROC of every score (labelled videos only)."""
    scores = dict(metrics["scores"], baseline=metrics["baseline_flow_magnitude"])
    videos = [v for v, a in scores["baseline"]["per_video_auroc"].items() if a is not None]
    lines = ["| score | " + " | ".join(videos) + " |", "|---|" + "---|" * len(videos)]
    for name, s in scores.items():
        row = [fmt2(s["per_video_auroc"][v]) for v in videos]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return lines


def time_table(history: list[dict]) -> list[str]:
    """One row per invocation of run_pipeline: command, commit, seconds of each step it ran."""
    steps = ["preprocess", "stage1", "stage2", "stage3", "train_stats", "eval"]
    lines = [
        "| finished | commit | command | " + " | ".join(steps) + " |",
        "|---|---|---|" + "---|" * len(steps),
    ]
    for entry in history:
        cells = [_seconds(entry["seconds"].get(step)) for step in steps]
        lines.append(
            f"| {entry['finished']} | {entry['commit']} | `{entry['command']}` | "
            + " | ".join(cells)
            + " |"
        )
    total = sum(sum(e["seconds"].values()) for e in history)
    lines.append(
        f"\nTotal wall time of the steps that did work: {total / 60:.1f} min (a step left blank "
        "was cached or finished already; a row from eval.py alone counts the training "
        "statistics, when not cached, in its eval time)."
    )
    return lines


def _seconds(value) -> str:
    return "–" if value is None else f"{value:.0f} s"


def _config_summary(saved_config: dict) -> list[str]:
    """Training, model and precision settings of the resolved config that eval saved."""
    rows = []
    for stage in RunLayout.from_config(as_config(saved_config)).stages:
        s = saved_config[f"stage{stage}"]
        rows.append(
            f"- stage {stage}: {s['num_epochs']} epoch(s), batch {s['batch_size']}, "
            f"lr {s['lr']:g}, max_cubes {s['max_cubes'] or 'all'}"
        )
    train, flow = saved_config["train"], saved_config["preprocess"]["flow"]
    if train.get("stage1_from"):
        rows.append(f"- stage 1: not trained here; the one in {train['stage1_from']}")
    model = saved_config["model"]
    rows.append(
        f"- model: {model['type']}, memories {model['memae']['mem_usage']}, skips "
        f"{model['memae']['skip_ops']}, num_recon_flows {model['num_recon_flows']}, "
        f"deterministic {model['deterministic']}"
    )
    rows.append(
        f"- precision: train bf16_cpu {train['bf16_cpu']}, eval bf16_cpu "
        f"{saved_config['eval'].get('bf16_cpu', False)}; flow {flow['method']} "
        f"(units {flow.get('units_size') or 'frame pixels'}); "
        f"boxes merge {saved_config['preprocess']['boxes']['merge']}"
    )
    return rows


def _objects_by_frame(objects: dict) -> dict[int, list[int]]:
    """Frame index -> indices of that frame's objects in a scores.json video."""
    by_frame: dict[int, list[int]] = {}
    for k, frame in enumerate(objects["frame"]):
        by_frame.setdefault(frame, []).append(k)
    return by_frame


def _rank_frames(scores_doc: dict) -> tuple[list, list]:
    """(normal, abnormal) labelled frames as (smoothed score, video, frame, object indices), the
    normal ones highest first, the abnormal ones lowest first."""
    normal, abnormal = [], []
    for video in scores_doc["videos"]:
        if video["labels"] is None:
            continue
        by_frame = _objects_by_frame(video["objects"])
        for frame, (label, score) in enumerate(zip(video["labels"], video["smoothed_score"])):
            if score is not None:
                row = (score, video["name"], frame, by_frame.get(frame, []))
                (abnormal if label else normal).append(row)
    return sorted(normal, reverse=True), sorted(abnormal)


def hardest_frames(scores_doc: dict, count: int = 6) -> list[str]:
    """The labelled frames that cost the micro AUROC most: the highest-scoring normal frames and
    the lowest-scoring abnormal ones (smoothed main score), with the top object of each."""
    normal, abnormal = _rank_frames(scores_doc)
    lines = [
        "| kind | video | frame | smoothed score | objects | top object box (x1 y1 x2 y2) |",
        "|---|---|---|---|---|---|",
    ]
    picks = [("normal, highest", r) for r in normal[:count]]
    picks += [("abnormal, lowest", r) for r in abnormal[:count]]
    objects = {v["name"]: v["objects"] for v in scores_doc["videos"]}
    for kind, (score, name, frame, own) in picks:
        top = max(own, key=lambda k: objects[name]["score"][k], default=None)
        box = "–" if top is None else " ".join(f"{v:.0f}" for v in objects[name]["box"][top])
        lines.append(f"| {kind} | {name} | {frame} | {score:.2f} | {len(own)} | {box} |")
    return lines


def plot_hardest_frames(
    scores_doc: dict, list_test_videos: Callable[[], list[Video]], path: Path, count: int = 2
) -> None:
    """The `count` highest-scoring normal and lowest-scoring abnormal frames with every object's
    (unsmoothed) score; objects above the lowest abnormal frame's smoothed score are red.
    `list_test_videos` lists the scored test videos (called only when there is a frame to plot)."""
    normal, abnormal = _rank_frames(scores_doc)
    if not normal or not abnormal:
        return
    videos = {v.name: v for v in list_test_videos()}
    docs = {v["name"]: v for v in scores_doc["videos"]}
    panels = []
    for kind, rows in (("normal", normal[:count]), ("abnormal", abnormal[:count])):
        for score, name, frame, own in rows:
            objects = docs[name]["objects"]
            image = next(itertools.islice(videos[name].frames(), frame, None))
            panels.append(
                {
                    "frame": image,
                    "boxes": [objects["box"][k] for k in own],
                    "scores": [objects["score"][k] for k in own],
                    "threshold": abnormal[0][0],
                    "title": f"video {name} frame {frame}: {kind}, smoothed score {score:.2f}",
                }
            )
    plot_frames_with_boxes(panels, path)


def build_report(
    run_dir: Path, saved_config: dict, scores_doc: dict, motion_checks: list, notes: str = ""
) -> str:
    """report.md of a run from its eval outputs (`saved_config`: the resolved config eval saved;
    `motion_checks`: current_motion_checks of its eval folder)."""
    metrics = read_json(run_dir / "eval" / "metrics.json")
    times_path = run_dir / "pipeline_times.json"
    history = read_json(times_path) if times_path.is_file() else []
    stats = metrics["train_stats"]
    ckpt = metrics["checkpoint"]
    lines = [
        f"# {metrics['name']}: Ped2 frame-level AUROC ({saved_config['config_file']})",
        "",
        "Generated by `python -m tools.report` from the run's `eval/metrics.json`, "
        "`pipeline_times.json` and resolved config; the other files here are copies of what "
        "`eval.py` wrote.",
        "",
        *auroc_rows(metrics, PAPER_PED2.get(metrics["name"])),
        "",
        "Per-video AUROC %:",
        "",
        *per_video_table(metrics),
        "",
        "## How it was made",
        "",
        *(time_table(history) if history else ["(no pipeline_times.json in the run)"]),
        "",
        *_config_summary(saved_config),
        f"- checkpoint: {ckpt['path']} (epoch {ckpt['epoch']}, {ckpt['selection']})",
        f"- precision as run: last training stage {ckpt.get('train_precision') or 'not recorded'}"
        f", scoring {ckpt.get('scoring_precision') or 'not recorded'}",
        "- training statistics (all training cubes): "
        f"S_r {stats['mean_r']:.4g} ± {stats['std_r']:.4g}, "
        f"S_p {stats['mean_p']:.4g} ± {stats['std_p']:.4g}",
        f"- protocol: first {metrics['protocol']['drop_first']} frames dropped, "
        f"{_track_note(metrics['protocol'])}"
        f"{metrics['protocol']['smoothing']} filter {metrics['protocol']['window']}; "
        f"{metrics['num_videos']} test videos scored, {metrics['num_objects']} objects",
    ]
    lines += [
        "",
        "## Hardest labelled frames (main score)",
        "",
        *hardest_frames(scores_doc),
        "",
        "`hardest_frames.png`: the two highest-scoring normal and two lowest-scoring abnormal "
        "frames with every object's score (red: above the lowest abnormal frame's score).",
    ]
    lines += standin_section(run_dir / "eval" / "standin.json")
    lines += motion_check_section(motion_checks)
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


def _track_note(protocol: dict) -> str:
    window = int(protocol.get("track_window", 1))
    if window <= 1:
        return ""
    return f"object scores median-smoothed over {window} frames along tracks (IoU >= " + (
        f"{protocol['track_iou']:g}), "
    )


def standin_rows(doc: dict) -> list[str]:
    """Rows (score, all, per object kind) of a pasted-object stand-in result."""
    kinds = list(next(iter(doc["scores"].values()))["micro_auroc_per_kind"])
    rows = [
        "| score | all stand-in videos | " + " | ".join(kinds) + " |",
        "|---" * (len(kinds) + 2) + "|",
    ]
    for name, s in doc["scores"].items():
        per_kind = " | ".join(fmt2(s["micro_auroc_per_kind"][k]) for k in kinds)
        rows.append(f"| {score_label(name, s)} | {fmt2(s['micro_auroc'])} | {per_kind} |")
    return rows


def standin_section(path: Path) -> list[str]:
    """The pasted-object stand-in (tools/pasted_standin.py) of a run, when it was run."""
    if not path.is_file():
        return []
    doc = read_json(path)
    return [
        "",
        "## Development stand-in: unusual objects at walking speed (micro AUROC %)",
        "",
        f"`python -m tools.pasted_standin --run <run>`: objects pasted into the validation "
        f"videos (never trained on), moving at {doc['speed_px_per_frame']} px/frame; the "
        "untouched validation videos are scored with them as all-normal videos.",
        "",
        *standin_rows(doc),
    ]


def current_motion_checks(eval_dir: Path) -> list[tuple[Path, dict]]:
    """(path, document) of each `python -m tools.motion_check` output in eval_dir made with the
    checkpoint that metrics.json was scored with: a single check of it, or an --all-epochs one
    that includes it (an epoch's kept copy shares the identity of its best.pth / last.pth)."""
    scored = read_json(eval_dir / "metrics.json")["checkpoint"]
    keys = ("module", "epoch", "step", "saved_at")

    def made_with_scored(doc: dict) -> bool:
        checks = doc.get("epochs", [doc])
        return any(all(c["checkpoint"].get(k) == scored[k] for k in keys) for c in checks)

    paths = sorted(eval_dir.glob("motion_check_*.json")) + sorted(
        eval_dir.glob("motion_epochs_*.json")
    )
    checks = [(path, read_json(path)) for path in paths]
    # a --checkpoint check (even of an epoch copy of the scored checkpoint) gets no table
    return [
        (path, doc)
        for path, doc in checks
        if not doc.get("explicit_checkpoint") and made_with_scored(doc)
    ]


def motion_check_section(motion_checks: list[tuple[Path, dict]]) -> list[str]:
    """The tables of the current_motion_checks of a run."""
    lines = []
    for path, doc in motion_checks:
        if "epochs" in doc:
            lines += motion_epochs_table(path, doc)
            continue
        lines += [
            "",
            f"## Does the CVAE use its flows? ({doc['num_cubes']} {doc['split']} cubes)",
            "",
            f"`python -m tools.motion_check --run {doc['run']} --split {doc['split']} "
            f"--num-cubes {doc['num_cubes']}` (`{path.name}`):",
            "",
            "| x5 estimate | mean S_p | median S_p |",
            "|---|---|---|",
            *(f"| {k} | {v['mean']:.2f} | {v['median']:.2f} |" for k, v in doc["rows"].items()),
        ]
    return lines


def motion_epochs_table(path: Path, doc: dict) -> list[str]:
    """One row per kept epoch of a `motion_check --all-epochs` document: mean S_p of each
    prediction, then the model-free references (the same at every epoch)."""
    first = doc["epochs"][0]
    predictions = _model_rows(first["rows"])
    return [
        "",
        f"## Does the CVAE's use of flows grow with training? ({first['num_cubes']} "
        f"{first['split']} cubes, every kept epoch)",
        "",
        f"`python -m tools.motion_check --run {doc['run']} --split {first['split']} "
        f"--num-cubes {first['num_cubes']} --all-epochs` (`{path.name}`), mean S_p:",
        "",
        "| epoch | " + " | ".join(predictions) + " |",
        "|---" * (len(predictions) + 1) + "|",
        *(
            f"| {c['checkpoint']['epoch']} | {_means(c['rows'], predictions)} |"
            for c in doc["epochs"]
        ),
        "",
        f"References: {_references(first['rows'])}.",
    ]


def _predictions(rows: dict) -> list[str]:
    """The frame predictor's rows of a motion check."""
    return [name for name in rows if name.startswith("prediction")]


def _model_rows(rows: dict) -> list[str]:
    """The rows that change with the checkpoint: the predictions and, for a hybrid, x4 moved by
    its reconstructed flow; the others are model-free references."""
    return _predictions(rows) + [RECON_WARP] * (RECON_WARP in rows)


def _means(rows: dict, names: list[str]) -> str:
    return " | ".join(f"{rows[name]['mean']:.2f}" for name in names)


def _references(rows: dict) -> str:
    """The model-free references of a motion check."""
    model_rows = _model_rows(rows)
    return "; ".join(f"{k} {v['mean']:.2f}" for k, v in rows.items() if k not in model_rows)


def publish(run_dir: Path, out_dir: Path, notes: str = "") -> Path:
    """Copy the run's eval outputs to `out_dir` and write report.md there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    eval_dir = run_dir / "eval"
    for name in EVAL_FILES:
        if (eval_dir / name).is_file():
            shutil.copy2(eval_dir / name, out_dir / name)
    motion_checks = current_motion_checks(eval_dir)
    for path, _ in motion_checks:
        shutil.copy2(path, out_dir / path.name)
    if (eval_dir / "curves").is_dir():
        shutil.copytree(eval_dir / "curves", out_dir / "curves", dirs_exist_ok=True)
    if (run_dir / "pipeline_times.json").is_file():
        shutil.copy2(run_dir / "pipeline_times.json", out_dir / "pipeline_times.json")
    scores_doc = read_json(eval_dir / "scores.json")
    saved_config = yaml.safe_load((eval_dir / "config.yaml").read_text())
    data = as_config(saved_config["data"])
    plot_hardest_frames(
        scores_doc, lambda: list_videos(data, data.test_split), out_dir / "hardest_frames.png"
    )
    report = out_dir / "report.md"
    text = build_report(run_dir, saved_config, scores_doc, motion_checks, notes)
    atomic_write_text(report, text)
    return report


GATHER_HEADER = """# Results: paper vs ours

Generated by `python -m tools.report --gather results` from the `metrics.json` of every folder
here; each folder's `report.md` names the command, commit and wall times behind it. Run them all
with `bash results/run_ped2_cpu.sh`.

**Every AUROC shown here is over the labelled Ped2 test videos 01-06 only** (the development
data holds no labels for 07-12), while the paper scores all 12. Each `scores.json` scores all 12
test videos, so a reader with the full labels can compute the paper's protocol from it. The
column "recipe" says how each row was trained and smoothed: `validated` = the schedule of
`cfgs/ped2_cpu.yaml` (validation split of whole training videos, early stopping, zero-padded
medfilt as the authors'); `fast` = the same with the short stages 2 and 3 of
`cfgs/ped2_cpu_fast.yaml` (3 epochs and 1; about 40 minutes for the whole recipe); `first` = the
first CPU schedule (a fixed, short stage 2; checkpoints by training loss; edge-repeating median
filter), kept until the row is rerun; `border crops as if whole` = objects cut by the image
border cropped with their box completed beyond it (`preprocess.cubes.border_aspect`,
docs/method.md §2.3); `stage 2 on original flows` = a hybrid whose stage 2
trained its CVAE on the original flows, stage 3 fine-tuning it on the reconstructions
(`stage2.cvae_flows`, docs/method.md §5).
"""
TABLE1 = [  # (row, paper %, result folder, score name; None = the run's main score)
    ("HF2-VAD", 99.3, "ped2_cpu", PAPER_FUSION),
    ("HF2-VAD + appearance novelty S_a (ours; the headline score)", None, "ped2_cpu", WITH_S_A),
    ("w/o frame prediction (ML-MemAE-SC alone)", 98.8, "ped2_cpu_memae", None),
    (
        "w/o flow reconstruction (CVAE on the original flows, S_p)",
        94.5,
        "ped2_cpu_cvae",
        "frame_prediction",
    ),
    ("w/o flow reconstruction + latent divergence S_kl (ours)", None, "ped2_cpu_cvae", DIVERGENCE),
]
# The paper's score of a run, by the run's main score (None: the main score is the paper's).
PAPER_SCORE = {"fused": PAPER_FUSION, DIVERGENCE: "frame_prediction"}
TABLE2 = [
    "ped2_cpu_memae_plain",
    "ped2_cpu_memae2",
    "ped2_cpu_memae",
    "ped2_cpu_vae",
    "ped2_cpu_cvae",
    "ped2_cpu_hybrid_memae_plain",
    "ped2_cpu_hybrid_memae2",
    "ped2_cpu",
    "ped2_cpu_fast",
]
TABLE3 = ["ped2_cpu_recon1", "ped2_cpu_recon2", "ped2_cpu_recon3", "ped2_cpu_recon4", "ped2_cpu"]
ABLATION_ROWS = [  # (row, result folder): our own choices, each beside the CPU schedule
    ("HF2-VAD (the headline run), flow in Ped2's own pixels", "ped2_cpu"),
    ("HF2-VAD, border objects cropped as if whole (docs/method.md §2.3)", "ped2_cpu_border"),
    ("flow in the authors' units (pixels of 1024x768 frames)", "ped2_cpu_flow_units"),
    ("whole frames instead of objects (Appendix D's mode)", "ped2_cpu_whole_frame"),
    ("HF2-VAD, fast recipe", "ped2_cpu_fast"),
    (
        "fast recipe, border objects cropped as if whole (docs/method.md §2.3)",
        "ped2_cpu_fast_border",
    ),
    ("ML-MemAE-SC alone (w/o frame prediction)", "ped2_cpu_memae"),
    ("ML-MemAE-SC alone, border objects cropped as if whole", "ped2_cpu_memae_border"),
]


def _paper_score(folder: Path) -> str | None:
    path = folder / "metrics.json"
    return PAPER_SCORE.get(read_json(path)["main_score"]) if path.is_file() else None


def _row(label: str, paper: float | None, result: dict | None, root: Path, folder: str) -> str:
    if result is None:
        return f"| {label} | {fmt2(paper)} | not run yet | | | `{folder}` |"
    return (
        f"| {label} | {fmt2(paper)} | {fmt2(result['micro_auroc'])} | "
        f"{fmt2(result['macro_auroc'])} | {recipe(root / folder)} | "
        f"[`{folder}`]({folder}/report.md) |"
    )


def _ped2_tables(root: Path) -> list[str]:
    head = [
        "| row | paper micro % | ours micro % | ours macro % | recipe | result |",
        "|---|---|---|---|---|---|",
    ]
    lines = ["## Table 1 (Ped2)", "", *head]
    for label, paper, folder, score in TABLE1:
        result = published_score(root / folder, score)
        if result is None and score in OPTIONAL_SCORES:
            continue  # a score of ours that this run does not compute
        lines.append(_row(label, paper, result, root, folder))
    lines += [
        "",
        "The rows without frame prediction and without flow reconstruction are separate models,",
        "as in the paper; the hybrid's own branches (its S_r and S_p alone) are a diagnostic in",
        '"Beyond the paper" below.',
    ]
    for title, names in (("Table 2 (Ped2)", TABLE2), ("Table 3 (Ped2)", TABLE3)):
        lines += ["", f"## {title}", "", *head]
        for name in names:
            label, paper = PAPER_PED2[name]
            label = label.split(", ", 1)[-1]
            if name == "ped2_cpu":
                label += " (ML-MemAE-SC 3 memories + CVAE, 4 flows reconstructed)"
            # A run that adds S_a or S_kl is shown with the paper's score, as the paper's rows are.
            score = _paper_score(root / name)
            lines.append(_row(label, paper, published_score(root / name, score), root, name))
    return lines


def _variants(root: Path) -> list[str]:
    """Fused, S_r and S_p micro AUROC of our variants beside the CPU schedule ("–" for a score
    that a model type does not have)."""
    lines = [
        "",
        "## Beyond the paper (Ped2): micro AUROC % of the fused score and of each branch",
        "",
        "| variant | fused | S_r only | S_p only | recipe | result |",
        "|---|---|---|---|---|---|",
    ]
    for label, folder in ABLATION_ROWS:
        path = root / folder / "metrics.json"
        if not path.is_file():
            lines.append(f"| {label} | not run yet | | | | `{folder}` |")
            continue
        scores = read_json(path)["scores"]
        cells = [
            fmt2(scores[name]["micro_auroc"]) if name in scores else "–"
            for name in ("fused", "flow_reconstruction", "frame_prediction")
        ]
        cells.append(recipe(root / folder))
        lines.append(f"| {label} | {' | '.join(cells)} | [`{folder}`]({folder}/report.md) |")
    return lines


def _motion_checks(root: Path) -> list[str]:
    """S_p AUROC and the motion check (mean S_p on test cubes) of every published run that has
    one: does its frame predictor get worse without its flows?"""
    paths = sorted(root.glob("*/motion_check_testing.json"))
    if not paths:
        return []
    first = read_json(paths[0])["rows"]
    predictions = _predictions(first)
    lines = [
        "",
        "## Does the frame predictor use its flows? (motion check, mean S_p of x5, test cubes)",
        "",
        "| run | S_p micro AUROC % | "
        + " | ".join(
            p.replace("prediction (as trained)", "as trained").removeprefix("prediction, ")
            for p in predictions
        )
        + " |",
        "|---" * (len(predictions) + 2) + "|",
    ]
    for path in paths:
        rows, name = read_json(path)["rows"], path.parent.name
        auroc = published_score(path.parent, "frame_prediction")
        means = _means(rows, predictions)
        lines.append(f"| [`{name}`]({name}/report.md) | {fmt2(auroc['micro_auroc'])} | {means} |")
    return lines + ["", f"References (no model): {_references(first)}."]


def _checkpoint_saved_at(folder: Path) -> str | None:
    """When the checkpoint that a published result scored was saved (None: not recorded)."""
    return (read_json(folder / "metrics.json").get("checkpoint") or {}).get("saved_at")


def _appendix_b(root: Path) -> list[str]:
    seeds = sorted((root / "ped2_cpu_stochastic").glob("seed*/metrics.json"))
    lines = ["", "## Appendix B (Ped2): posterior mean vs sampled latents", ""]
    deterministic = published_score(root / "ped2_cpu")
    if not seeds or deterministic is None:
        return lines + ["Not run yet (`bash results/run_ped2_cpu.sh ped2_cpu_stochastic`)."]
    micro = [read_json(p)["scores"]["fused"]["micro_auroc"] for p in seeds]
    sampled = _checkpoint_saved_at(seeds[0].parent)
    headline = _checkpoint_saved_at(root / "ped2_cpu")
    if sampled != headline:  # a model of the headline's config, but not the published one
        return lines + [
            f"The sampled-latent runs ({len(micro)} seeds, fused micro {min(micro):.3f}-"
            f"{max(micro):.3f} %) scored a model saved {sampled or 'at an unrecorded time'}, "
            f"the published headline is another (saved {headline or 'at an unrecorded time'}): "
            "rerun them with `bash results/run_ped2_cpu.sh ped2_cpu_stochastic` to compare."
        ]
    return lines + [
        "| | paper micro % | ours micro % |",
        "|---|---|---|",
        f"| deterministic z | 99.3078 | {deterministic['micro_auroc']:.3f} |",
        f"| sampled z, {len(micro)} seed(s) (range) | 99.3065-99.3089 | "
        f"{min(micro):.3f}-{max(micro):.3f} |",
    ]


def _mnist(root: Path) -> list[str]:
    path = root / "mnist" / "metrics.json"
    if not path.is_file():
        return []
    metrics = read_json(path)
    lines = ["", "## Figure 4 (MNIST, AUROC % of the reconstruction error)", ""]
    lines += ["| " + " | ".join(metrics) + " |", "|" + "---|" * len(metrics)]
    lines.append("| " + " | ".join(f"{100 * v['auroc']:.2f}" for v in metrics.values()) + " |")
    return lines + ["", "The paper shows Figure 4 as images only; see [mnist](mnist/report.md)."]


def _standins(root: Path) -> list[str]:
    """Every published run's pasted-object stand-in result, side by side."""
    paths = sorted(root.glob("*/standin.json"))
    if not paths:
        return []
    lines = [
        "",
        "## Development stand-in: unusual objects at walking speed (micro AUROC %)",
        "",
        "Objects pasted into each run's validation videos (`python -m tools.pasted_standin`; "
        "development data that may be looked at, unlike the test videos). Fused / S_r / S_p: "
        "the run's own scores.",
        "",
        "| run | score | all | cyclist | cart |",
        "|---|---|---|---|---|",
    ]
    for path in paths:
        name = path.parent.name
        for score, s in read_json(path)["scores"].items():
            kinds = s["micro_auroc_per_kind"]
            lines.append(
                f"| [`{name}`]({name}/report.md) | {score_label(score, s)} | "
                f"{fmt2(s['micro_auroc'])} | {fmt2(kinds.get('cyclist'))} | "
                f"{fmt2(kinds.get('cart'))} |"
            )
    return lines


def gather(root: Path) -> Path:
    """Write root/README.md (see gather_text)."""
    path = root / "README.md"
    atomic_write_text(path, gather_text(root))
    return path


def gather_text(root: Path) -> str:
    """The paper's tables beside every published result, then root/notes.md when it exists."""
    lines = [GATHER_HEADER, *_ped2_tables(root), *_appendix_b(root), *_variants(root)]
    lines += _standins(root)
    lines += _motion_checks(root)
    lines += _mnist(root)
    if (root / "notes.md").is_file():  # hand-written reading of the tables
        lines += ["", (root / "notes.md").read_text().strip()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="the run_dir of a finished run")
    parser.add_argument("--out", type=Path, help="folder under results/")
    parser.add_argument("--notes", type=Path, help="markdown appended to the report")
    parser.add_argument("--gather", type=Path, help="write README.md of this results folder")
    parser.add_argument(
        "--readme", type=Path, help="rewrite the generated parts of this README (tools/readme.py)"
    )
    args = parser.parse_args(argv)
    if args.gather:
        print(gather(args.gather))
        return
    if args.readme:
        update_readme(args.readme, Path("results"))
        print(args.readme)
        return
    if args.run is None or args.out is None:
        parser.error("give --run and --out (or --gather)")
    if not (args.run / "eval" / "metrics.json").is_file():
        raise SystemExit(f"{args.run / 'eval' / 'metrics.json'} not found: evaluate the run first")
    notes = args.notes.read_text() if args.notes else ""
    print(publish(args.run, args.out, notes))


if __name__ == "__main__":
    run_cli(main, "tools.report")
