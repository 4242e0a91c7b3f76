"""Pre-processing: object boxes, optical flow and spatio-temporal cubes (docs/method.md §2)."""


def run_preprocess(cfg, splits=None) -> dict:
    """Boxes, flows and cubes for `splits` (default: the train and test splits); see
    `pre_process.run`. Imported lazily so that `python -m pre_process.run` stays clean."""
    from pre_process.run import run_preprocess as run

    return run(cfg, splits)


__all__ = ["run_preprocess"]
