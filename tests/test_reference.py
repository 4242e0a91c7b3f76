"""The reference execution of bench/reference.py computes what the model computes."""

import torch

from bench.bench_models import random_cubes
from bench.reference import ReferenceExecution
from models import build_model, object_scores, scoring_model
from utils.config import load_config


def test_reference_execution_equals_the_scoring_model():
    cfg = load_config(
        "cfgs/ped2.yaml",
        [
            "model.memae.feature_root=8",
            "model.memae.num_slots=64",
            "model.cvae.nf_start=16",
            "model.cvae.nf_max=32",
        ],
    )
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    frames, flows = random_cubes(16, torch.device("cpu"))
    reference = ReferenceExecution(model)(frames, flows)
    ours = scoring_model(model, fuse=True, channels_last=True, micro_batch=8)(frames, flows)
    torch.testing.assert_close(reference["flow_recon"], ours["flow_recon"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(reference["frame_pred"], ours["frame_pred"], rtol=1e-4, atol=1e-4)
    for ref, got in zip(object_scores(reference), object_scores(ours)):
        torch.testing.assert_close(ref, got, rtol=1e-3, atol=1e-4)
