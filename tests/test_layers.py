"""The package layering of docs/architecture.md: every import points down, `utils/` imports
nothing else of the project, and no module or test imports an entry script."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# lowest first; a package may import only packages of a lower layer (and itself)
LAYERS = [
    ["utils"],
    ["models", "datasets"],
    ["pre_process"],
    ["engine"],
    ["scoring"],
    ["inference"],
    ["evaluation"],
    ["pipeline"],
    ["tools", "bench"],
]
SCRIPTS = {p.stem for p in REPO.glob("*.py")}


def project_imports(path: Path) -> set[str]:
    """Top-level project names that `path` imports (absolute imports only)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
    return names


def test_imports_point_down_the_layers():
    level = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
    wrong = []
    for pkg, rank in level.items():
        for path in sorted((REPO / pkg).rglob("*.py")):
            for name in project_imports(path):
                if name in SCRIPTS:
                    wrong.append(f"{path.relative_to(REPO)} imports the script {name}.py")
                elif name in level and name != pkg and level[name] >= rank:
                    wrong.append(f"{path.relative_to(REPO)} imports {name} (not a lower layer)")
    assert not wrong, "\n".join(wrong)


def test_tests_and_scripts_import_no_script():
    paths = sorted((REPO / "tests").glob("*.py")) + sorted(REPO.glob("*.py"))
    wrong = [
        f"{path.relative_to(REPO)} imports {name}.py"
        for path in paths
        for name in project_imports(path) & SCRIPTS
        if name != path.stem
    ]
    assert not wrong, "\n".join(wrong)


# Functions that may take the config (docs/architecture.md, "Configs in, typed settings below"):
# the library entry functions that scripts call, builders, and the config utilities.
ENTRY_FUNCTIONS = {
    "engine/stages.py": {"train_stage1", "train_stage"},
    "evaluation/protocol.py": {"evaluate", "evaluate_epochs", "rescore", "run_evaluation"},
    "evaluation/deployment.py": {"deployment_check"},
    "pipeline/run.py": {"run_pipeline"},
    "pre_process/__init__.py": {"run_preprocess"},
    "pre_process/run.py": {"run_preprocess"},
    "tools/mnist_toy.py": {"run"},
    "tools/appearance_sweep.py": {"sweep", "standin_from_config"},
}
BUILDERS = {
    "inference/trained_run.py": {"trained_run_from_config", "_build_trained_run"},
    "scoring/appearance.py": {"build_appearance"},
}
CONFIG_UTILITIES = {"utils/config.py", "utils/fingerprint.py", "engine/checkpoint.py"}


def functions_taking_config(path: Path) -> set[str]:
    """Names of the functions in `path` with a parameter named `cfg`."""
    return {
        node.name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef)
        and "cfg" in [a.arg for a in node.args.args + node.args.kwonlyargs]
    }


def test_below_the_entry_points_only_builders_take_the_config():
    wrong = []
    for pkg in [pkg for layer in LAYERS for pkg in layer]:
        for path in sorted((REPO / pkg).rglob("*.py")):
            name = str(path.relative_to(REPO))
            if name in CONFIG_UTILITIES:
                continue
            allowed = ENTRY_FUNCTIONS.get(name, set()) | BUILDERS.get(name, set()) | {"from_config"}
            wrong += [f"{name}: {f}" for f in sorted(functions_taking_config(path) - allowed)]
    assert not wrong, "take typed settings instead of the config:\n" + "\n".join(wrong)
