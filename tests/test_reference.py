"""The reference execution of bench/reference.py computes what the model computes."""

import torch

from bench.bench_models import random_cubes
from bench.reference import ReferenceExecution, reference_copy, reference_outputs
from models import build_loss, build_model, object_scores, scoring_model
from models.cvae import Dropout
from utils.config import load_config

TINY = [
    "model.memae.feature_root=8",
    "model.memae.num_slots=64",
    "model.cvae.nf_start=16",
    "model.cvae.nf_max=32",
]


def test_reference_execution_equals_the_scoring_model():
    cfg = load_config("cfgs/ped2.yaml", TINY)
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    frames, flows = random_cubes(16, torch.device("cpu"))
    reference = ReferenceExecution(model)(frames, flows)
    ours = scoring_model(model, fuse=True, channels_last=True, micro_batch=8)(frames, flows)
    torch.testing.assert_close(reference["flow_recon"], ours["flow_recon"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(reference["frame_pred"], ours["frame_pred"], rtol=1e-4, atol=1e-4)
    for ref, got in zip(object_scores(reference), object_scores(ours)):
        torch.testing.assert_close(ref, got, rtol=1e-3, atol=1e-4)


def test_reference_training_step_equals_ours():
    """The benchmark's reference training (each flow through ML-MemAE-SC on its own, dense memory
    read, weight norm the authors' way) has our losses and gradients. BatchNorm runs on its
    running statistics here: in training it normalises each flow's batch in the reference and all
    flows of the batch together in ours (docs/method.md §8), a difference of the data, not of the
    function; dropout is off: the two draw their masks differently (test_models.py)."""
    cfg = load_config("cfgs/ped2.yaml", TINY)
    torch.manual_seed(0)
    ours = build_model(cfg.model).train()
    reference = reference_copy(ours).train()
    for module in [*ours.modules(), *reference.modules()]:
        if isinstance(module, (torch.nn.BatchNorm2d, Dropout)):
            module.eval()
    frames, flows = random_cubes(8, torch.device("cpu"))
    criterion = build_loss(cfg.loss.to_dict())
    torch.manual_seed(1)
    got = criterion(ours(frames, flows))
    torch.manual_seed(1)
    expected = criterion(reference_outputs(reference, frames, flows))
    assert set(got) == set(expected) and {"entropy", "kl", "frame"} <= set(got)
    for name in got:
        torch.testing.assert_close(expected[name], got[name], rtol=1e-4, atol=1e-6)
    got["total"].backward()
    expected["total"].backward()
    named = dict(reference.named_parameters())
    for name, param in ours.named_parameters():
        torch.testing.assert_close(named[name].grad, param.grad, rtol=1e-3, atol=1e-6)
