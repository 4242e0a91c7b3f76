"""The paper's evaluation protocol (docs/method.md §6): object scores -> frame scores -> AUROC,
the eval folder it writes and the re-scoring of a saved scores.json. Run by `eval.py` (its
docstring describes the command and the outputs) and by `pipeline.run`."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_curve

from datasets import CubeDataset, CubeSource
from datasets.labels import LabelSource
from engine.checkpoint import checkpoint_identity
from engine.run_dir import RunLayout
from evaluation.settings import EvalSettings
from inference.trained_run import TrainedRun, trained_run_from_config
from models import model_type
from pre_process.boxes import touches_border
from scoring.appearance import AppearanceBank, build_appearance, grey_crops
from scoring.frame_scores import (
    FrameProtocol,
    auroc_summary,
    check_finite,
    empty_frame_score,
    flow_magnitude_object_scores,
    fuse_scores,
    labelled_frames,
)
from scoring.statistics import (
    SAVED_STAT_KEYS,
    STAT_KEYS,
    ScoringSettings,
    collect_object_scores,
)
from scoring.weights import ScoreSet, Weights
from utils.config import replaced, save_config
from utils.fingerprint import CheckpointError, check_fingerprints, fingerprints
from utils.io import finite_or_none, folder_lock, read_json, write_json
from utils.misc import (
    dtype_name,
    get_logger,
    git_commit,
    resolve_device,
    seed_everything,
    set_cpu_threads,
)
from utils.plots import plot_anomaly_curve, plot_object_grid, plot_roc

SCORES_FORMAT = "hf2vad-scores-1"


@dataclass
class ObjectTable:
    """Every test object: its errors and where it is. Arrays have one entry per object."""

    s_r: np.ndarray
    s_p: np.ndarray
    video_idx: np.ndarray
    frame_idx: np.ndarray
    boxes: np.ndarray  # [N, 4] x1, y1, x2, y2
    videos: list[str]
    num_frames: list[int]
    frame_size: tuple[int, int]  # (height, width) of the test frames
    s_a: np.ndarray | None = None  # appearance novelty, with eval.w_a > 0
    s_kl: np.ndarray | None = None  # latent divergence, for a model with a frame predictor


def _labels_in_order(source: LabelSource, videos, num_frames) -> list[np.ndarray | None]:
    by_name = source.load(list(videos), list(num_frames))
    return [by_name[name] for name in videos]


def _frame_scores(protocol: FrameProtocol, table: ObjectTable, object_score, empty_score):
    """(object scores along tracks, raw frame scores, smoothed frame scores)."""
    tracked = protocol.tracks.apply(object_score, table.video_idx, table.frame_idx, table.boxes)
    raw, smoothed = protocol.frame_scores_of_tracked(
        tracked, table.video_idx, table.frame_idx, table.num_frames, empty_score
    )
    return tracked, raw, smoothed


def score_table(
    table: ObjectTable,
    stats: dict,
    labels,
    weights: dict[str, Weights],
    protocol: FrameProtocol,
    border_margin: float | None = None,
) -> dict:
    """For every named weight triple: object scores, raw and smoothed frame scores, AUROC
    summary. With `border_margin`, objects within it of the image border are z-scored with the
    border group's statistics (eval.border_stats)."""
    where = (table.video_idx, table.frame_idx, table.videos, "scoring")
    check_finite(table.s_r, table.s_p, *where, s_kl=table.s_kl)
    results = {}
    border = None
    if border_margin is not None:
        check_border_groups(stats, border_margin)
        border = touches_border(table.boxes, table.frame_size, border_margin)
    for name, (w_r, w_p, w_a, w_kl) in weights.items():
        optional = dict(s_a=table.s_a, w_a=w_a, s_kl=table.s_kl, w_kl=w_kl)
        obj = fuse_scores(table.s_r, table.s_p, stats, w_r, w_p, border=border, **optional)
        grouped = border is not None
        empty = empty_frame_score(stats, w_r, w_p, grouped=grouped, w_a=w_a, w_kl=w_kl)
        tracked, raw, smoothed = _frame_scores(protocol, table, obj, empty)
        results[name] = {
            "w_r": w_r,
            "w_p": w_p,
            **({"w_a": w_a} if w_a else {}),
            **({"w_kl": w_kl} if w_kl else {}),
            "object": obj,
            "tracked": tracked,
            "raw": raw,
            "smoothed": smoothed,
            "summary": auroc_summary(smoothed, labels),
        }
    return results


def configured_score_table(settings: EvalSettings, table: ObjectTable, stats: dict, labels) -> dict:
    """score_table with the weights, protocol and border setting of an evaluation."""
    return score_table(
        table,
        stats,
        labels,
        settings.scores.weights,
        settings.protocol,
        settings.border_margin,
    )


def check_border_groups(stats: dict, margin: float) -> None:
    """The per-group training statistics that eval.border_stats needs, for this margin."""
    groups = stats.get("groups")
    if groups is None or groups["margin"] != margin:
        have = "none" if groups is None else f"margin {groups['margin']}"
        raise CheckpointError(
            f"eval.border_stats needs training statistics per border group for margin {margin} "
            f"(the scores hold {have}): run eval.py without --rescore to compute them"
        )


def saved_stats(stats: dict) -> dict:
    """The training statistics as scores.json and metrics.json keep them."""
    saved = {k: stats[k] for k in SAVED_STAT_KEYS if k in stats}
    if "groups" in stats:
        saved["groups"] = stats["groups"]
    return saved


def _baseline(flows_path: Path, protocol: FrameProtocol, table: ObjectTable, labels) -> dict:
    """Flow-magnitude-only score on the same cubes and protocol: mean |last flow| per object,
    smoothed along tracks when the protocol does, max per frame."""
    flows = np.load(flows_path, mmap_mode="r")
    if len(flows) != len(table.s_r):
        raise ValueError(f"test cubes changed since scoring: {len(flows)} != {len(table.s_r)}")
    obj = flow_magnitude_object_scores(flows)
    _, raw, smoothed = _frame_scores(protocol, table, obj, 0.0)  # no objects: no motion
    return {
        "object": obj,
        "raw": raw,
        "smoothed": smoothed,
        "summary": auroc_summary(smoothed, labels),
    }


def scores_document(
    settings: EvalSettings, table: ObjectTable, stats, labels, results, ckpt_info: dict
) -> dict:
    """The scores.json content (see README): per video frame scores, labels and objects."""
    main = results[settings.scores.primary]
    protocol = settings.protocol
    order = np.lexsort((table.frame_idx, table.video_idx))
    videos = []
    for v, name in enumerate(table.videos):
        idx = order[table.video_idx[order] == v]
        videos.append(
            {
                "name": name,
                "num_frames": int(table.num_frames[v]),
                "labels": None if labels[v] is None else [int(x) for x in labels[v]],
                "frame_score": finite_or_none(main["raw"][v]),
                "smoothed_score": finite_or_none(main["smoothed"][v]),
                "objects": {
                    "frame": [int(f) for f in table.frame_idx[idx]],
                    "box": [[float(c) for c in box] for box in table.boxes[idx]],
                    "s_r": [float(x) for x in table.s_r[idx]],
                    "s_p": [float(x) for x in table.s_p[idx]],
                    **({} if table.s_a is None else {"s_a": [float(x) for x in table.s_a[idx]]}),
                    **({} if table.s_kl is None else {"s_kl": [float(x) for x in table.s_kl[idx]]}),
                    # the value each object brings to its frame's maximum; "fused": before the
                    # track smoothing (the same when eval.track_window is 1)
                    "score": [float(x) for x in main["tracked"][idx]],
                    "fused": [float(x) for x in main["object"][idx]],
                },
            }
        )
    return {
        "format": SCORES_FORMAT,
        "score": settings.scores.primary,
        "w_r": main["w_r"],
        "w_p": main["w_p"],
        "w_a": main.get("w_a", 0.0),
        "w_kl": main.get("w_kl", 0.0),
        "drop_first": protocol.drop_first,
        "smoothing": {
            "smoothing": protocol.smoothing,
            "window": protocol.window,
            "sigma": protocol.sigma,
        },
        "tracks": {"window": protocol.tracks.window, "min_iou": protocol.tracks.min_iou},
        "border_stats": settings.border_margin is not None,
        "frame_size": list(table.frame_size),
        "train_stats": saved_stats(stats),
        "checkpoint": ckpt_info,
        "fingerprints": fingerprints(settings.config, ckpt_info["module"]),
        "config": settings.config,
        "videos": videos,
    }


def read_scores(path: Path, settings: EvalSettings) -> tuple[ObjectTable, dict, dict, dict]:
    """(objects, training statistics, checkpoint info, resolved config) of a scores.json made for
    an evaluation with these settings; a malformed file is an error naming it and what is wrong."""
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != SCORES_FORMAT:
        raise CheckpointError(f"{path} is not a scores file of this project ({SCORES_FORMAT})")
    try:
        info = doc["checkpoint"]
        check_fingerprints(
            doc["fingerprints"], doc["config"], settings.config, info["module"], f"scores {path}"
        )
        table = _object_table(doc, settings.test_cubes)
        stats = doc["train_stats"]
        for key in STAT_KEYS:
            float(stats[key])
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise CheckpointError(
            f"scores file {path} is malformed ({type(err).__name__}: {err}); evaluate again "
            "without --rescore"
        ) from None
    return table, stats, info, doc["config"]


def _object_table(doc: dict, test_cubes: Path) -> ObjectTable:
    """The objects of a scores document; every per-object list of a video must be complete."""
    for video in doc["videos"]:
        objects = video["objects"]
        keys = [k for k in ("frame", "box", "s_r", "s_p", "s_a", "s_kl") if k in objects]
        lengths = {k: len(objects[k]) for k in keys}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"video {video['name']}: object lists of unequal length {lengths}")
    counts = [len(v["objects"]["frame"]) for v in doc["videos"]]

    def column(key, dtype):
        values = [x for v in doc["videos"] for x in v["objects"][key]]
        return np.asarray(values, dtype=dtype)

    def optional_column(key):
        if all(key in v["objects"] for v in doc["videos"]):
            return column(key, np.float64)
        return None

    return ObjectTable(
        s_r=column("s_r", np.float64),
        s_p=column("s_p", np.float64),
        s_a=optional_column("s_a"),
        s_kl=optional_column("s_kl"),
        video_idx=np.repeat(np.arange(len(counts)), counts).astype(np.int64),
        frame_idx=column("frame", np.int64),
        boxes=column("box", np.float64).reshape(-1, 4),
        videos=[v["name"] for v in doc["videos"]],
        num_frames=[int(v["num_frames"]) for v in doc["videos"]],
        frame_size=tuple(doc.get("frame_size") or _test_frame_size(test_cubes)),
    )


def _test_frame_size(test_cubes: Path) -> tuple[int, int]:
    """(height, width) of the test frames, from the test cubes' manifest."""
    return tuple(read_json(test_cubes / "manifest.json")["frame_size"])


def _rounded(value):
    return None if value is None else round(100.0 * value, 3)


def metrics_document(
    settings: EvalSettings, table: ObjectTable, stats, results, baseline, ckpt_info, seconds
) -> dict:
    """The metrics.json content: AUROC (%) per score, counts, statistics and timing."""

    def summary(entry):
        s = entry["summary"]
        return {
            "micro_auroc": _rounded(s["micro_auroc"]),
            "macro_auroc": _rounded(s["macro_auroc"]),
            "per_video_auroc": {
                name: _rounded(a) for name, a in zip(table.videos, s["per_video_auroc"])
            },
            "num_labelled_videos": s["num_labelled_videos"],
            "num_scored_frames": s["num_scored_frames"],
            "num_abnormal_frames": s["num_abnormal_frames"],
        }

    scores = {
        name: {k: r[k] for k in ("w_r", "w_p", "w_a", "w_kl") if k in r} | summary(r)
        for name, r in results.items()
    }
    frames_with_objects = sum(
        len(np.unique(table.frame_idx[table.video_idx == v])) for v in range(len(table.videos))
    )
    num_frames = int(sum(table.num_frames))
    return {
        "name": settings.name,
        "model_type": settings.model_type,
        "main_score": settings.scores.primary,
        "auroc_unit": "percent",
        "scores": scores,
        "baseline_flow_magnitude": summary(baseline),
        "checkpoint": ckpt_info,
        "deterministic": settings.deterministic,
        "protocol": settings.protocol_record(),
        "train_stats": saved_stats(stats),
        "num_videos": len(table.videos),
        "num_frames": num_frames,
        "num_objects": len(table.s_r),
        "num_frames_without_objects": num_frames - frames_with_objects,
        "seconds_scoring": seconds,
        "frames_per_second": num_frames / seconds if seconds else None,
        # the pass over the training cubes, when this evaluation made it (None: cached)
        "seconds_train_stats": None if stats.get("cached", True) else stats["seconds"],
    }


def _selection(settings: EvalSettings, ckpt: dict, ckpt_path: Path) -> str:
    choice = settings.layout.eval_checkpoint
    if choice == "best" and ckpt.get("selected_by") == "validation":
        videos = ", ".join(settings.val_videos)
        return f"best: lowest mean validation error (training videos {videos}; no test labels)"
    if choice == "best":
        return "best: lowest mean training loss of an epoch (no test labels used)"
    if choice == "last":
        return "last: the final epoch"
    return f"given path {ckpt_path}"


@torch.inference_mode()
def _grid_rows(model, dataset, table: ObjectTable, score: np.ndarray, indices, device) -> list:
    batch = [dataset[int(i)] for i in indices]
    frames = torch.stack([b["frames"] for b in batch]).to(device)
    flows = torch.stack([b["flows"] for b in batch]).to(device)
    model.eval()
    out = model(frames, flows)
    rows = []
    for k, i in enumerate(indices):
        recon = out["flow_recon"]
        pred = out["frame_pred"]
        rows.append(
            {
                "flow": flows[k, -1].permute(1, 2, 0).cpu().numpy(),
                "flow_recon": None
                if recon is None
                else recon[k, -1].permute(1, 2, 0).cpu().numpy(),
                "frame": out["frame_target"][k].permute(1, 2, 0).cpu().numpy(),
                "frame_pred": None if pred is None else pred[k].permute(1, 2, 0).cpu().numpy(),
                "caption": f"{table.videos[table.video_idx[i]]} #{table.frame_idx[i]}\n"
                f"S={score[i]:.2f}\nSr={table.s_r[i]:.3g}\nSp={table.s_p[i]:.3g}",
            }
        )
    return rows


def write_plots(
    settings: EvalSettings,
    out_dir: Path,
    table,
    labels,
    results,
    baseline,
    model=None,
    dataset=None,
    device=None,
) -> None:
    """roc.png, curves/<video>.png and (with the model) objects_highest/lowest.png."""
    curves = {}
    for name, entry in list(results.items()) + [("flow magnitude baseline", baseline)]:
        scores, labs = labelled_frames(entry["smoothed"], labels)
        if np.unique(labs).size == 2:
            fpr, tpr, _ = roc_curve(labs, scores)
            curves[name] = (fpr, tpr, entry["summary"]["micro_auroc"])
    if curves:
        plot_roc(curves, out_dir / "roc.png")
    primary = settings.scores.primary
    main = results[primary]
    per_video = main["summary"]["per_video_auroc"]
    for v, name in enumerate(table.videos):
        plot_anomaly_curve(
            name,
            main["raw"][v],
            main["smoothed"][v],
            labels[v],
            out_dir / "curves" / f"{name}.png",
            per_video[v],
        )
    if model is None or len(table.s_r) == 0:
        return
    order = np.argsort(main["object"], kind="stable")  # fused scores, before track smoothing
    k = min(settings.num_grid_objects, len(order))
    for which, indices in (("highest", order[::-1][:k]), ("lowest", order[:k])):
        rows = _grid_rows(model, dataset, table, main["object"], indices, device)
        plot_object_grid(
            rows,
            f"{which}-scoring test objects ({primary} score)",
            out_dir / f"objects_{which}.png",
        )


def _report(
    settings: EvalSettings, table, stats, labels, results, ckpt_info, seconds, out_dir, **plots
) -> dict:
    flows_path = settings.test_cubes / "flows.npy"
    baseline = _baseline(flows_path, settings.protocol, table, labels)
    metrics = metrics_document(settings, table, stats, results, baseline, ckpt_info, seconds)
    scores = scores_document(settings, table, stats, labels, results, ckpt_info)
    write_json(out_dir / "scores.json", scores)
    write_json(out_dir / "metrics.json", metrics)
    save_config(settings.config, out_dir / "config.yaml")
    if settings.plots:
        write_plots(settings, out_dir, table, labels, results, baseline, **plots)
    return metrics


def evaluate(cfg, out_dir: Path | None = None) -> dict:
    """Score the test cubes with the run's final model, write the eval folder, return metrics
    (holding the run directory's lock meanwhile)."""
    with folder_lock(cfg.run_dir):
        set_cpu_threads(cfg.train.cpu_threads)
        settings = EvalSettings.from_config(cfg)
        run = trained_run_from_config(cfg)
        test = run.cubes.open(run.cubes.test_split)
        return _evaluate(settings, run, test, out_dir)


def _evaluate(
    settings: EvalSettings, run: TrainedRun, test: CubeDataset, out_dir: Path | None
) -> dict:
    """Score `test` with `run`, then fuse, smooth, measure and write the eval folder."""
    logger = get_logger()
    tic = time.time()
    seed_everything(settings.seed)  # the latent samples when model.deterministic is false
    s_r, s_p, s_kl = collect_object_scores(
        run.model, test, settings.batch_size, settings.num_workers, run.device, "test scores"
    )
    seconds = time.time() - tic
    table = ObjectTable(
        s_r=s_r,
        s_p=s_p,
        video_idx=np.asarray(test.video_idx, dtype=np.int64),
        frame_idx=np.asarray(test.frame_idx, dtype=np.int64),
        boxes=np.asarray(test.boxes, dtype=np.float64),
        videos=list(test.videos),
        num_frames=[int(n) for n in test.num_frames],
        frame_size=tuple(test.manifest["frame_size"]),
        s_a=run.appearance_novelty(test.target_frames()),
        s_kl=s_kl if model_type(settings.model_type).predictor else None,
    )
    labels = _labels_in_order(settings.labels, table.videos, table.num_frames)
    results = configured_score_table(settings, table, run.stats, labels)
    ckpt_info = dict(
        checkpoint_identity(run.ckpt),
        path=str(run.ckpt_path),
        selection=_selection(settings, run.ckpt, run.ckpt_path),
        # as run, which bf16_cpu does not say on CPUs without fast bf16 (None: not recorded)
        train_precision=run.ckpt.get("precision"),
        scoring_precision=dtype_name(run.scoring.precision),
    )
    out_dir = out_dir or settings.layout.eval_dir
    metrics = _report(
        settings,
        table,
        run.stats,
        labels,
        results,
        ckpt_info,
        seconds,
        out_dir,
        model=run.model,
        dataset=test,
        device=run.device,
    )
    logger.info(f"evaluation written to {out_dir}")
    return metrics


def record_eval_times(layout: RunLayout, metrics: dict, seconds: float) -> None:
    """Append an evaluation's time to <run_dir>/pipeline_times.json, the pass over the training
    cubes apart when it ran."""
    stats_seconds = metrics["seconds_train_stats"]
    if stats_seconds is not None:
        layout.record_times({"train_stats": stats_seconds})
        seconds -= stats_seconds
    layout.record_times({"eval": seconds})


def evaluate_epochs(cfg) -> dict:
    """Test AUROC of every kept epoch_NNN.pth of the final stage (needs train.keep_epochs).

    Picking an epoch by these numbers selects on the test labels, as the authors did for their
    Ped2 model (docs/method.md §5): report it only next to the label-free checkpoint, and say so.
    Writes eval/epochs/<epoch_NNN>/ (no plots) and eval/epochs.json.
    """
    layout = RunLayout.from_config(cfg)
    paths = layout.kept_epoch_checkpoints()
    if not paths:
        raise FileNotFoundError(
            f"no epoch_NNN.pth in {layout.final_stage_dir}: train with train.keep_epochs=true"
        )
    rows = []
    for path in paths:
        epoch_cfg = replaced(cfg, {"eval.checkpoint": str(path), "eval.plots": False})
        metrics = evaluate(epoch_cfg, out_dir=layout.eval_dir / "epochs" / path.stem)
        rows.append(
            {
                "epoch": metrics["checkpoint"]["epoch"],
                "path": str(path),
                **{
                    name: {k: s[k] for k in ("micro_auroc", "macro_auroc")}
                    for name, s in metrics["scores"].items()
                },
            }
        )
    main = ScoreSet.from_config(cfg).primary
    best = max(rows, key=lambda row: row[main]["micro_auroc"] or 0.0)
    doc = {
        "main_score": main,
        "epochs": rows,
        "last_epoch": rows[-1],
        "selected_on_test_labels": best,
        "note": "selected_on_test_labels picks the epoch by test micro AUROC (the authors' Ped2 "
        "selection); it is an optimistic number, not a label-free result",
    }
    write_json(layout.eval_dir / "epochs.json", doc)
    return doc


def appearance_identity(config: dict) -> dict:
    """What an object's S_a depends on besides the cubes, from a resolved config (plain dict):
    the bank (training videos outside the validation split, k nearest), the crop feature and the
    scoring precision. A config written before eval.appearance_hog existed scored pixels only;
    one written before S_a existed has none (an empty identity)."""
    ev = config["eval"]
    if "appearance_k" not in ev:
        return {}
    return {
        "k": int(ev["appearance_k"]),
        "hog_weight": float(ev.get("appearance_hog", 0.0)),
        "bank_without": sorted(config["train"]["val_videos"] or []),
        "device": str(config["device"]),
        "bf16_cpu": bool(ev["bf16_cpu"]),
        "amp": bool(ev["amp"]),
    }


def _rescored_appearance(
    table: ObjectTable,
    stats: dict,
    bank: AppearanceBank,
    train_s_a: np.ndarray,
    test: CubeDataset,
    train: CubeDataset,
    bf16: bool,
) -> tuple[ObjectTable, dict]:
    """`table` and `stats` with S_a recomputed for every object (model-free: the target-frame
    crops of the test cubes against `bank`) and its training statistics from `train_s_a` (one
    per training cube, in `train`'s order), per border group too."""
    order = np.lexsort((np.asarray(test.frame_idx), np.asarray(test.video_idx)))  # as saved
    boxes = np.asarray(test.boxes, dtype=np.float64)[order]
    if list(test.videos) != list(table.videos) or not np.allclose(boxes, table.boxes, atol=1e-3):
        raise CheckpointError(
            f"the test cubes in {test.cube_dir} are not those of the saved scores: "
            "evaluate again without --rescore"
        )
    s_a = np.asarray(bank.novelty(grey_crops(test.target_frames()[order]), bf16=bf16), np.float64)
    stats = dict(stats, mean_a=float(train_s_a.mean()), std_a=float(train_s_a.std()))
    if "groups" in stats:
        groups = dict(stats["groups"])
        frame_size = train.manifest["frame_size"]
        cut = touches_border(np.asarray(train.boxes), frame_size, groups["margin"])
        for name, mask in (("border", cut), ("interior", ~cut)):
            part = train_s_a[mask]
            groups[name] = dict(groups[name], mean_a=float(part.mean()), std_a=float(part.std()))
        stats["groups"] = groups
    return dataclasses.replace(table, s_a=s_a), stats


def rescore(cfg) -> dict:
    """Recompute fusion, smoothing, AUROC and plots from eval/scores.json (no model run). S_a
    needs no model: when the saved one was computed otherwise than `cfg` asks (feature, k, bank,
    precision), it is recomputed from the test and training cubes with its statistics."""
    settings = EvalSettings.from_config(cfg)
    out_dir = settings.layout.eval_dir
    table, stats, ckpt_info, saved_config = read_scores(out_dir / "scores.json", settings)
    saved_identity = appearance_identity(saved_config)
    wanted = appearance_identity(settings.config)
    if settings.scores.uses_appearance and (table.s_a is None or saved_identity != wanted):
        get_logger().info(f"recomputing S_a: saved {saved_identity}, asked {wanted}")
        cubes = CubeSource.from_config(cfg)
        bank, train_s_a = build_appearance(cfg)
        scoring = ScoringSettings.from_config(cfg, resolve_device(cfg.device))
        table, stats = _rescored_appearance(
            table,
            stats,
            bank,
            train_s_a,
            cubes.open(cubes.test_split),
            cubes.open(cubes.train_split),
            scoring.precision == torch.bfloat16,
        )
    labels = _labels_in_order(settings.labels, table.videos, table.num_frames)
    results = configured_score_table(settings, table, stats, labels)
    return _report(settings, table, stats, labels, results, ckpt_info, 0.0, out_dir)


def results_table(metrics: dict) -> str:
    """A markdown table of micro / macro AUROC (%) per score and the baseline."""
    lines = ["| score | w_r | w_p | micro AUROC % | macro AUROC % |", "|---|---|---|---|---|"]

    def fmt(x):
        return "n/a" if x is None else f"{x:.2f}"

    for name, s in metrics["scores"].items():
        w_a = f" + {s['w_a']:g} S_a" if s.get("w_a") else ""
        w_a += f" + {s['w_kl']:g} S_kl" if s.get("w_kl") else ""
        lines.append(
            f"| {name} | {s['w_r']:g} | {s['w_p']:g}{w_a} | {fmt(s['micro_auroc'])} | "
            f"{fmt(s['macro_auroc'])} |"
        )
    b = metrics["baseline_flow_magnitude"]
    lines.append(
        f"| flow magnitude baseline | - | - | {fmt(b['micro_auroc'])} | {fmt(b['macro_auroc'])} |"
    )
    main = metrics["scores"][metrics["main_score"]]
    lines.append(
        f"\n{metrics['num_videos']} test videos ({main['num_labelled_videos']} labelled), "
        f"{metrics['num_frames']} frames, {metrics['num_objects']} objects; checkpoint "
        f"{metrics['checkpoint']['path']} (epoch {metrics['checkpoint']['epoch']}, "
        f"{metrics['checkpoint']['selection']})"
    )
    return "\n".join(lines)


def run_evaluation(cfg, rescore_only: bool = False, all_epochs: bool = False) -> str:
    """What `eval.py` does: evaluate (and log the time), re-score the saved scores, or evaluate
    every kept epoch; returns the text to print."""
    if all_epochs:
        doc = evaluate_epochs(cfg)
        lines = [f"epoch {row['epoch']}: {row[doc['main_score']]}" for row in doc["epochs"]]
        lines.append(f"selected on test labels: epoch {doc['selected_on_test_labels']['epoch']}")
        return "\n".join(lines)
    if rescore_only:  # timed and recorded too: it may recompute S_a
        tic = time.time()
        metrics = rescore(cfg)
        RunLayout.from_config(cfg).record_times({"eval": time.time() - tic})
        return results_table(metrics)
    git_commit()  # the commit of the code that runs, even if the tree changes meanwhile
    tic = time.time()
    metrics = evaluate(cfg)
    record_eval_times(RunLayout.from_config(cfg), metrics, time.time() - tic)
    return results_table(metrics)
