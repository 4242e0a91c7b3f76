"""Every step of a config in one call: pre-processing, training stages, statistics and
evaluation (or, without a test split, the deployment check). Run by `run_pipeline.py`, whose
docstring describes the command."""

from __future__ import annotations

import functools
import time

from engine.distributed import barrier, setup_distributed
from engine.run_dir import RunLayout
from engine.stages import train_stage, train_stage1
from evaluation.deployment import deployment_check, deployment_text
from evaluation.protocol import evaluate, record_eval_times, results_table
from pre_process import run_preprocess
from utils.misc import git_commit


def run_pipeline(cfg) -> dict | None:
    """Run every step for `cfg`; returns the metrics on rank 0 (None on other ranks); without a
    test split (`data.test_split: null`, own footage) the deployment check instead.

    Each step's time is appended to <run_dir>/pipeline_times.json as soon as it finishes
    (steps that were cached or already finished are left out)."""
    ctx = setup_distributed(cfg.device, cfg.train.cpu_threads)
    layout = RunLayout.from_config(cfg)
    git_commit()  # the commit of the code that runs, even if the tree changes meanwhile
    tic = time.time()
    labelled = cfg.data.test_split is not None
    if ctx.is_main:
        splits = (
            (cfg.data.train_split, cfg.data.test_split) if labelled else (cfg.data.train_split,)
        )
        summary = run_preprocess(cfg, splits=splits)
        if any(any(s["computed"].values()) for s in summary["splits"].values()):
            layout.record_times({"preprocess": time.time() - tic})
    barrier()
    for stage in layout.stages:
        train = train_stage1 if stage == 1 else functools.partial(train_stage, stage=stage)
        summary = train(cfg, resume=True)
        if summary["seconds"] > 0 and ctx.is_main:
            layout.record_times({f"stage{stage}": summary["seconds"]})
    if not ctx.is_main:
        return None
    if not labelled:  # own footage: calibrate on normal videos instead of an AUROC
        doc = deployment_check(cfg)
        print(deployment_text(doc))
        return doc
    tic = time.time()
    metrics = evaluate(cfg)
    record_eval_times(layout, metrics, time.time() - tic)
    print(results_table(metrics))
    return metrics
