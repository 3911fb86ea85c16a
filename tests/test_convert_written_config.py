"""The config `tools/convert.py --save-config` writes for a checkpoint of ours (issue 27 items 3 and 12): every model
field it states is what the checkpoint's card (state.json) or the --base-config states, and a class count the
default base cannot hold names the config the checkpoint was trained with."""

import inspect
import json
import os

import pytest
import yaml

from segmenter.convert.config import resolved_yaml
from segmenter.models.mask_transformer import MaskTransformer
from segmenter.models.segmenter import Segmenter
from segmenter.models.vit import SegmenterViT
from tests.engine_helpers import TINY_YAML
from tests.helpers import tool_exit_code

# The tiny engine config trained without stochastic depth (the case: the state and the base say 0.0) and
# with dropout 0.1, a training value no default gives.
BASE = TINY_YAML.replace("drop_path_rate: 0.1", "drop_path_rate: 0.0")
# The class each section of a written Segmenter model builds, for the values neither the card nor the base states.
SECTIONS = {(): Segmenter, ("backbone",): SegmenterViT, ("decoder",): MaskTransformer}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One training iteration of the base config: save_dir/iter_1/{model.pdparams, state.json}, save_dir/config.yml."""
    from segmenter.engine.run import load_config, run_train

    tmp = tmp_path_factory.mktemp("written_config")
    base = tmp / "base.yml"
    base.write_text(BASE)
    save_dir = tmp / "run"
    run_train(load_config(str(base), iters=1), str(save_dir), save_interval=1, log_iters=100)
    src = str(save_dir / "iter_1" / "model.pdparams")
    return {"tmp": tmp, "base": str(base), "save_dir": str(save_dir), "src": src}


def _leaves(d: dict, path: tuple = ()):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, path + (k,))
        else:
            yield path + (k,), v


def _at(d: dict, path: tuple):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            raise KeyError(path)
        d = d[k]
    return d


def _stated(path: tuple, card: dict, base: dict):
    """(who states it, the value) of a model field: the card, else the base, else the default of its class."""
    for name, source in (("card", card), ("base", base)):
        try:
            return name, _at(source, path)
        except KeyError:
            continue
    return "default", inspect.signature(SECTIONS[path[:-1]]).parameters[path[-1]].default


def _same(a, b) -> bool:
    """Equal as a config value: an int size is its square pair, numbers compare by value."""
    if isinstance(a, int) and isinstance(b, list) or isinstance(a, list) and isinstance(b, int):
        a, b = ([a, a] if isinstance(a, int) else a), ([b, b] if isinstance(b, int) else b)
    return a == b


def test_every_written_model_field_is_what_the_card_or_base_states(trained, capsys):
    out = trained["tmp"] / "out"
    argv = [trained["src"], str(out / "m.pdparams"), "--base-config", trained["base"]]
    argv += ["--save-config", str(out / "m.yml")]
    assert tool_exit_code("convert.py", argv) == 0, capsys.readouterr().err[-1500:]
    written = yaml.safe_load((out / "m.yml").read_text())["model"]
    with open(os.path.join(trained["save_dir"], "iter_1", "state.json")) as f:
        card = json.load(f)["model"]
    base = resolved_yaml(trained["base"])["model"]
    assert card["backbone"]["drop_path_rate"] == 0.0 == base["backbone"]["drop_path_rate"], (card, base)
    wrong = []
    for path, value in _leaves(written):
        if path[-1] == "pretrained":  # the converted file, by design
            continue
        name, expected = _stated(path, card, base)
        if not _same(value, expected):
            wrong.append(f"model.{'.'.join(path)}: written {value!r}, {name} {expected!r}")
    assert not wrong, "the written config states what neither the card nor the base does:\n" + "\n".join(wrong)


def test_another_class_count_names_the_base_config_to_pass(trained, capsys):
    out = trained["tmp"] / "out12"
    argv = [trained["src"], str(out / "m.pdparams"), "--save-config", str(out / "m.yml")]
    assert tool_exit_code("convert.py", argv) == 1
    err = capsys.readouterr().err
    line = next((ln for ln in err.splitlines() if ln.startswith("error:")), "")
    config = os.path.join(trained["save_dir"], "config.yml")
    assert f"--base-config {config}" in line and "4 classes" in line and "150" in line, err[-1500:]
    assert not out.exists() or not os.listdir(out), f"written although refused: {os.listdir(out)}"
    # the advice works: the config the checkpoint was trained with holds its 4 classes
    assert tool_exit_code("convert.py", argv + ["--base-config", config]) == 0, capsys.readouterr().err[-1500:]
