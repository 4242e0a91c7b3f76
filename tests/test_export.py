"""The exported scoring graph (models/export.py) computes what the PyTorch model computes, in
ONNX Runtime and OpenVINO, for every model type, at any batch size; eval.backend scores with it."""

from pathlib import Path

import pytest
import torch
from fake_cubes import TINY_MODEL

from inference.runtimes import exported_model
from inference.trained_run import ExportShape, export_for_scoring, export_path, load_trained_run
from models import build_model, object_scores, scoring_model
from models.export import export_onnx, graph_outputs, metadata_path, read_metadata
from scoring.statistics import ScoringSettings
from utils.config import ConfigError, load_config
from utils.io import write_json

pytestmark = pytest.mark.usefixtures("one_thread")
# The quick loop (-m "not slow") keeps one export per backend (memae); CI runs them all.

BACKENDS = ["onnxruntime", "openvino"]  # float32; bf16 below
TOL = 1e-4  # max abs difference of flow_recon / frame_pred, float32 (as the fused copy)


def cubes(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    frames = torch.rand(count, 5, 3, 32, 32, generator=generator)
    flows = 2 * torch.randn(count, 4, 2, 32, 32, generator=generator)
    return frames, flows


def tiny_model(model_type: str) -> torch.nn.Module:
    cfg = load_config(Path("cfgs/ped2.yaml"), TINY_MODEL + [f"model.type={model_type}"])
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    # Memory slots that queries really use, so the shrinkage keeps several per query
    for module in model.modules():
        if hasattr(module, "slots"):
            module.slots.data.mul_(20)
    return model


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "model_type",
    [
        pytest.param("hybrid", marks=pytest.mark.slow),
        "memae",
        pytest.param("cvae", marks=pytest.mark.slow),
    ],
)
def test_exported_graph_equals_pytorch_in_each_backend(model_type, backend, tmp_path):
    pytest.importorskip("onnxscript", reason="exporting needs onnx and onnxscript")
    pytest.importorskip(backend, reason=f"{backend} is not installed")
    model = tiny_model(model_type)
    path = export_onnx(model, tmp_path / "m.onnx", *cubes(2), {"note": "test"})
    assert read_metadata(path) == {"outputs": list(graph_outputs(model)), "note": "test"}
    frames, flows = cubes(7, seed=1)  # another batch size than the traced one
    with torch.inference_mode():
        expected = model(frames, flows)
    runner = exported_model(path, backend, list(graph_outputs(model)), micro_batch=3)
    got = runner(frames, flows)
    for name in ("flow_recon", "frame_pred"):
        if expected[name] is None:
            assert got[name] is None
            continue
        assert got[name].shape == expected[name].shape
        diff = (got[name] - expected[name]).abs().max().item()
        assert diff <= TOL, f"{backend} {name}: {diff}"
    for mine, ref in zip(object_scores(got), object_scores(expected)):
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_openvino_bf16_keeps_the_order_of_object_scores(tmp_path):
    pytest.importorskip("openvino", reason="openvino is not installed")
    pytest.importorskip("onnxscript", reason="exporting needs onnx and onnxscript")
    model = tiny_model("hybrid")
    path = export_onnx(model, tmp_path / "m.onnx", *cubes(2))
    frames, flows = cubes(64, seed=2)
    flows[::2] *= 4  # a spread of errors to rank
    with torch.inference_mode():
        expected = object_scores(model(frames, flows))
    runner = exported_model(path, "openvino", list(graph_outputs(model)), bf16=True)
    got = object_scores(runner(frames, flows))
    for mine, ref in zip(got, expected):
        ranks = torch.corrcoef(torch.stack([mine.argsort().argsort(), ref.argsort().argsort()]))
        assert ranks[0, 1] > 0.99
        assert ((mine - ref).abs() / ref).median() < 0.02


@pytest.mark.slow
def test_trained_run_scores_through_the_export_and_refreshes_a_stale_one(tiny_run):
    pytest.importorskip("onnxscript", reason="exporting needs onnx and onnxscript")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    torch_run = load_trained_run(tiny_run, ["eval.fuse=false"])
    onnx_run = load_trained_run(tiny_run, ["eval.backend=onnxruntime"])
    path = export_path(onnx_run.ckpt_path)
    assert path.is_file() and read_metadata(path)["model_type"] == "hybrid"
    frames, flows = cubes(5)
    for mine, ref in zip(
        object_scores(onnx_run.model(frames, flows)), object_scores(torch_run.model(frames, flows))
    ):
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-4)
    # an export made from another checkpoint is replaced, not used
    write_json(metadata_path(path), {**read_metadata(path), "checkpoint": {"epoch": 99}})
    cfg = onnx_run.cfg
    shape = ExportShape.from_config(cfg)
    _, metadata = export_for_scoring(
        torch_run.model.model, onnx_run.ckpt, onnx_run.ckpt_path, shape
    )
    assert metadata["checkpoint"]["epoch"] == onnx_run.ckpt["epoch"]
    # so is one made by older code, without an output that scoring now reads (S_kl)
    write_json(metadata_path(path), {**metadata, "outputs": ["flow_recon", "frame_pred"]})
    _, metadata = export_for_scoring(
        torch_run.model.model, onnx_run.ckpt, onnx_run.ckpt_path, shape
    )
    assert metadata["outputs"] == ["flow_recon", "frame_pred", "latent_divergence"]


def test_backend_settings_are_checked_before_anything_is_exported(tiny_run, fast_bf16):
    with pytest.raises(ConfigError, match="eval.backend"):
        load_config(Path("cfgs/ped2.yaml"), ["eval.backend=tensorrt"])
    export = export_path(tiny_run / "stage3" / "best.pth")
    export.unlink(missing_ok=True)
    with pytest.raises(ValueError, match="float32 only"):
        load_trained_run(tiny_run, ["eval.backend=onnxruntime", "eval.bf16_cpu=true"])
    with pytest.raises(ValueError, match="test mode only"):
        load_trained_run(tiny_run, ["eval.backend=openvino", "model.deterministic=false"])
    assert not export.exists()


def test_a_missing_package_is_a_one_line_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino":
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with pytest.raises(ValueError, match="eval.backend=openvino needs the package 'openvino'"):
        exported_model("unused.onnx", "openvino", ["frame_pred"])


@pytest.mark.slow
def test_scoring_model_unchanged_by_export(tmp_path):
    """Exporting leaves the model as it was (the sparse read, weight norm and dtype stay)."""
    pytest.importorskip("onnxscript", reason="exporting needs onnx and onnxscript")
    model = tiny_model("hybrid")
    model.cvae.to(torch.float64)  # a model in another dtype: export works on a copy
    export_onnx(model, tmp_path / "m.onnx", *cubes(2))
    assert next(model.cvae.parameters()).dtype == torch.float64
    model.cvae.to(torch.float32)
    frames, flows = cubes(3)
    before = scoring_model(model, fuse=False)(frames, flows)["frame_pred"]
    export_onnx(model, tmp_path / "m.onnx", *cubes(2))
    assert all(m.sparse_read for m in model.modules() if hasattr(m, "sparse_read"))
    after = scoring_model(model, fuse=False)(frames, flows)["frame_pred"]
    assert torch.equal(before, after)


def test_low_precision_backends_keep_statistics_of_their_own(tmp_path, fast_bf16):
    """Each low precision (and backend) is normalised by training statistics of its own, in a
    file of its own; float32 backends share PyTorch's (their scores agree to ~1e-6)."""
    ckpt = tmp_path / "best.pth"

    def path(*overrides):
        cfg = load_config(Path("cfgs/ped2.yaml"), ["device=cpu", *overrides])
        return ScoringSettings.from_config(cfg, torch.device("cpu")).stats_path(ckpt)

    assert path("eval.backend=openvino") == path() == tmp_path / "best.train_stats.json"
    assert path("eval.bf16_cpu=true") == tmp_path / "best.train_stats.bfloat16.json"
    openvino_bf16 = path("eval.backend=openvino", "eval.bf16_cpu=true")
    assert openvino_bf16 == tmp_path / "best.train_stats.bfloat16.openvino.json"
