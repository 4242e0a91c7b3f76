"""Config loading: defaults, inheritance, overrides, and the errors users see."""

import copy
from pathlib import Path

import pytest

from utils.config import ConfigError, load_config, replaced, save_config

REPO = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_every_shipped_config_loads():
    for path in sorted((REPO / "cfgs").glob("*.yaml")):
        if path.name != "defaults.yaml":
            cfg = load_config(path)
            assert cfg.name, path


def test_inheritance_states_only_differences(tmp_path):
    write(
        tmp_path / "parent.yaml",
        f"_base_: {REPO / 'cfgs' / 'ped2.yaml'}\nstage1:\n  num_epochs: 3\n",
    )
    child = write(tmp_path / "child.yaml", "_base_: parent.yaml\nstage1:\n  batch_size: 8\n")
    cfg = load_config(child)
    assert cfg.stage1.num_epochs == 3 and cfg.stage1.batch_size == 8
    assert cfg.data.dataset == "ped2"
    assert cfg.stage2.lr == 1e-4  # untouched default


def test_overrides_parse_yaml_values():
    cfg = load_config(
        REPO / "cfgs" / "ped2.yaml",
        [
            "stage1.num_epochs=2",
            "model.memae.mem_usage=[false,true,true]",
            "eval.w_p=1",
            "data.root=/tmp/x",
        ],
    )
    assert cfg.stage1.num_epochs == 2
    assert cfg.model.memae.mem_usage == [False, True, True]
    assert cfg.eval.w_p == 1.0 and isinstance(cfg.eval.w_p, float)
    assert cfg.data.root == "/tmp/x"


def test_unknown_key_names_key_and_choices(tmp_path):
    with pytest.raises(ConfigError, match=r"stage1\.num_epoch'.*num_epochs"):
        load_config(REPO / "cfgs" / "ped2.yaml", ["stage1.num_epoch=2"])
    bad = write(tmp_path / "bad.yaml", "_base_: " + str(REPO / "cfgs/ped2.yaml") + "\nfoo: 1\n")
    with pytest.raises(ConfigError, match="unknown config key 'foo'"):
        load_config(bad)


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match="'stage1.num_epochs' expects int"):
        load_config(REPO / "cfgs" / "ped2.yaml", ["stage1.num_epochs=abc"])
    with pytest.raises(ConfigError, match="'train.amp' expects bool"):
        load_config(REPO / "cfgs" / "ped2.yaml", ["train.amp=3"])
    with pytest.raises(ConfigError, match="'stage1' is a section"):
        load_config(REPO / "cfgs" / "ped2.yaml", ["stage1=3"])


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["stage1.num_epochs"])
    loop = write(tmp_path / "loop.yaml", "_base_: loop.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(loop)


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(REPO / "cfgs" / "ped2.yaml", ["stage1.num_epochs=7"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    again, cfg = copy.deepcopy(again), copy.deepcopy(cfg)  # writable copies
    again.pop("config_file"), cfg.pop("config_file")
    assert again == cfg


def test_checkpoint_fingerprint_ignores_new_and_location_keys():
    from utils.fingerprint import fingerprints

    cfg = copy.deepcopy(load_config("cfgs/ped2.yaml"))  # writable: a config of later code
    before = fingerprints(cfg)
    cfg.data["a_key_added_later"] = 1
    cfg.data.root, cfg.data.cache_dir = "/elsewhere", "/tmp/cache"
    assert fingerprints(cfg) == before
    cfg.data.max_frames = 30
    assert fingerprints(cfg)["data"] != before["data"]


def test_datasets_variable_sets_the_default_data_roots(monkeypatch, tmp_path):
    monkeypatch.setenv("HF2VAD_DATASETS", str(tmp_path))
    cfg = load_config("cfgs/ped2_cpu.yaml")  # a _base_ chain through defaults.yaml
    assert cfg.data.root == str(tmp_path) and cfg.mnist.root == str(tmp_path / "mnist")
    assert load_config("cfgs/synthetic.yaml").data.root == "cache/synthetic_data"  # its own
    assert load_config("cfgs/ped2.yaml", ["data.root=/x"]).data.root == "/x"
    monkeypatch.delenv("HF2VAD_DATASETS")
    assert load_config("cfgs/ped2.yaml").data.root == "data"


def test_replaced_is_a_checked_copy():
    cfg = load_config(REPO / "cfgs" / "ped2.yaml")
    new = replaced(cfg, {"eval.plots": False, "run_dir": "elsewhere"})
    assert new.eval.plots is False and new.run_dir == "elsewhere"
    assert cfg.eval.plots is True and cfg.run_dir != "elsewhere"  # the original is unchanged
    with pytest.raises(ConfigError, match="'eval.nonsense'"):
        replaced(cfg, {"eval.nonsense": 1})
    with pytest.raises(ConfigError, match="eval.window"):
        replaced(cfg, {"eval.window": 0})


def test_a_loaded_config_is_read_only_and_copies_say_what_differs():
    import pickle

    from utils.config import FrozenConfigError

    cfg = load_config(REPO / "cfgs" / "ped2.yaml")
    writes = [
        lambda: setattr(cfg, "seed", 3),
        lambda: cfg.eval.__setitem__("w_a", 1.0),
        lambda: cfg.eval.update(w_a=1.0),
        lambda: cfg.eval.pop("w_a"),
        lambda: cfg.data.__ior__({"root": "x"}),
        lambda: cfg.train.__delitem__("seed" if "seed" in cfg.train else "amp"),
    ]
    for write in writes:
        with pytest.raises(FrozenConfigError, match="replaced"):
            write()
    changed = replaced(cfg, {"seed": 5})
    assert changed.seed == 5 and cfg.seed != 5
    with pytest.raises(FrozenConfigError):
        changed.eval.w_a = 2.0  # a replaced copy is frozen too
    writable = copy.deepcopy(cfg)
    writable.eval.w_a = 2.0  # deepcopy: a writable copy for tests and tools
    assert cfg.eval.w_a != 2.0
    again = pickle.loads(pickle.dumps(cfg))  # worker processes get it frozen
    assert again == cfg
    with pytest.raises(FrozenConfigError):
        again.seed = 1
    plain = cfg.to_dict()
    plain["train"]["val_videos"].append("99")  # a plain copy, lists included
    assert "99" not in cfg.train.val_videos
