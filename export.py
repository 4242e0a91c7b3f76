"""Export a trained run's scoring graph to ONNX, for ONNX Runtime and OpenVINO.

    python export.py --run runs/ped2_cpu [--set key=value ...] [--num-cubes 64]

Writes <checkpoint>.onnx (e.g. runs/ped2_cpu/stage3/best.onnx, float32, any batch size; inputs
`frames` [B, 5, 3, 32, 32] in [0, 1] and `flows` [B, 4, 2, 32, 32], outputs `flow_recon` and/or
`frame_pred`) with a sidecar <checkpoint>.json, then scores evenly spaced cached cubes with
PyTorch and with every installed backend and writes the agreement of the object scores to
<checkpoint>.export_check.json. eval.py and detect.py use the export with
`eval.backend=onnxruntime` or `eval.backend=openvino` (made on first use when missing); see
inference/runtimes.py.
"""

from __future__ import annotations

import argparse

from inference.export_run import export_run, export_text
from utils.cli import run_cli


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, help="run directory of a trained model")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="settings on top of the run's"
    )
    parser.add_argument("--num-cubes", type=int, default=64, help="cubes for the parity check")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    args = parser.parse_args()
    print(export_text(export_run(args.run, args.set, args.num_cubes)))


if __name__ == "__main__":
    run_cli(main)
