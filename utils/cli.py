"""How entry scripts end: an expected error (bad input, config, checkpoint or data) is one line
on stderr and exit status 2; the full traceback only with `--debug` or HF2VAD_DEBUG=1."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from utils.fingerprint import CheckpointError
from utils.io import LockedError

# Errors that the project raises with a message meant for the user (ConfigError, DetectError
# and the data errors are ValueErrors; missing files FileNotFoundError; a NaN loss
# FloatingPointError). Anything else is a bug and keeps its traceback.
EXPECTED_ERRORS = (
    ValueError,
    FileNotFoundError,
    CheckpointError,
    LockedError,
    FloatingPointError,
    OSError,
)


def add_override_option(parser: argparse.ArgumentParser, example: str) -> None:
    """`--set KEY=VALUE` (repeatable) into `args.overrides`: settings on top of a run's config."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a setting of the run's config, e.g. --set {example}",
    )


def debugging(argv: list[str] | None = None) -> bool:
    """True with `--debug` on the command line or HF2VAD_DEBUG set (not 0)."""
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get("HF2VAD_DEBUG", "0") not in ("", "0")


def run_cli(main: Callable[[], object], prog: str | None = None) -> None:
    """Run an entry script's main(); expected errors become one line and exit status 2,
    Ctrl-C exit status 130."""
    prog = prog or os.path.basename(sys.argv[0])
    if "--quiet" in sys.argv[1:]:
        os.environ["HF2VAD_QUIET"] = "1"  # read by utils.misc.progress_bars_wanted
    try:
        main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except EXPECTED_ERRORS as err:
        if debugging():
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
