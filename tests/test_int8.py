"""bench/bench_int8.py: which convolutions each int8 variant quantises, and that a quantised
graph still runs and scores (speed and agreement are the benchmark's, not tested here)."""

import numpy as np
import pytest
import torch

from bench.bench_int8 import quantisable_nodes, quantise
from inference.runtimes import exported_model
from inference.trained_run import ExportShape, export_for_scoring, load_run
from models import object_scores

pytest.importorskip("onnxruntime.quantization", reason="int8 needs onnxruntime")
pytest.importorskip("openvino", reason="the int8 graphs run in OpenVINO")
pytest.importorskip("onnxscript", reason="the export needs onnxscript")


@pytest.mark.slow
def test_int8_parts_split_the_convolutions_and_the_quantised_graph_scores(tiny_run, tmp_path):
    cfg, model, ckpt, ckpt_path = load_run(tiny_run, device="cpu")
    path, metadata = export_for_scoring(model.eval(), ckpt, ckpt_path, ExportShape.from_config(cfg))
    parts = quantisable_nodes(path)
    memae, cvae = set(parts["ml_memae_sc"]), set(parts["cvae"])
    assert memae and cvae and not memae & cvae and memae | cvae == set(parts["all"])
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(16, 5, 3, 32, 32, generator=generator)
    flows = torch.randn(16, 4, 2, 32, 32, generator=generator)
    out = tmp_path / "int8_ml_memae_sc.onnx"
    quantise(path, out, parts["ml_memae_sc"], (frames, flows))
    float_scores = object_scores(
        exported_model(path, "openvino", metadata["outputs"])(frames, flows)
    )
    int8 = exported_model(out, "openvino", metadata["outputs"])
    int8_scores = object_scores(int8(frames, flows))
    s_r, s_p = int8_scores.s_r.numpy(), int8_scores.s_p.numpy()
    assert np.isfinite(s_r).all() and np.isfinite(s_p).all()
    assert not np.allclose(s_r, float_scores[0].numpy())  # ML-MemAE-SC was quantised ...
    # ... and the CVAE was not, but gets the quantised reconstructions as its condition
    assert np.corrcoef(s_p, float_scores[1].numpy())[0, 1] > 0.9
