"""Every tool takes `--option=value` as argparse users type it, for every single-valued option it has (issue 30):
the tools' parser checks unknown options itself before argparse does, and must read the name before the '='."""

import argparse
import os
import runpy

import pytest

from segmenter.engine import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "tools")) if f.endswith(".py"))
# what each tool needs besides the option under test (positionals first); a tool missing here fails the test
REQUIRED = {
    "attention": ["--config=c.yml", "--image=i.png"],
    "convert": ["src.pth", "dst.pdparams"],
    "demo": ["--config=c.yml", "--weights=w.pdparams"],
    "export": ["--config=c.yml", "--save=out/m"],
    "parity": [],
    "predict": ["--config=c.yml", "--model_path=w.pdparams", "--image_path=i.png"],
    "train": ["--config=c.yml"],
    "val": ["--config=c.yml", "--model_path=w.pdparams"],
}
NOT_THROUGH_PARSER = {"benchmark"}  # a dispatcher: its topics parse their own arguments (benchmarks/)


class Captured(Exception):
    pass


def parser_of(tool: str) -> argparse.ArgumentParser:
    """The Parser tools/<tool>.py builds, caught as it is asked to parse."""
    parse_args = runpy.run_path(os.path.join(ROOT, "tools", f"{tool}.py"), run_name="tool_options")["parse_args"]
    real = cli.Parser.parse_args
    got = []

    def catch(self, args=None, namespace=None):
        got.append(self)
        raise Captured

    cli.Parser.parse_args = catch
    try:
        parse_args(REQUIRED[tool])
    except Captured:
        pass
    finally:
        cli.Parser.parse_args = real
    assert got, f"tools/{tool}.py did not build a segmenter.engine.cli.Parser"
    return got[0]


def sample_value(action: argparse.Action):
    """A value the option accepts, as typed and as parsed; None for options that take no single value."""
    if action.nargs is not None or action.default == argparse.SUPPRESS or not action.option_strings:
        return None  # flags, lists, PaddleSeg's refused options, positionals
    if action.choices:
        c = list(action.choices)[-1]
        return str(c), c
    if action.type in (int, float):
        return "3", action.type("3")
    if action.type in (None, str):
        return "some_value", "some_value"
    if isinstance(action.default, str):  # a checking type (cli.choice) takes its own default
        return action.default, action.type(action.default)
    return None


@pytest.mark.parametrize("tool", [t for t in TOOLS if t not in NOT_THROUGH_PARSER])
def test_every_option_takes_the_equals_form(tool):
    assert tool in REQUIRED, f"tools/{tool}.py is new: add what it requires to REQUIRED"
    p = parser_of(tool)
    tried = []
    for action in p._actions:
        v = sample_value(action)
        if v is None or action.dest in {"config", "model_path", "weights", "image_path", "image", "save"}:
            continue
        typed, parsed = v
        flag = max(action.option_strings, key=len)
        ns = p.parse_args([*REQUIRED[tool], f"{flag}={typed}"])
        got = getattr(ns, action.dest)
        assert got == parsed, f"tools/{tool}.py {flag}={typed} read as {got!r}"
        tried.append(flag)
    for req in REQUIRED[tool]:  # the required options were given in the = form too
        if req.startswith("--"):
            name, value = req.split("=", 1)
            dest = next(a.dest for a in p._actions if name in a.option_strings)
            assert getattr(p.parse_args(REQUIRED[tool]), dest) == value, f"tools/{tool}.py {req}"
    assert tried or tool == "parity", f"tools/{tool}.py: no single-valued option was tried"


@pytest.mark.parametrize("script", ["quickstart.sh", "run_tests.sh"])
def test_the_two_scripts_answer_help_without_installing(script, tmp_path):
    """`bash tools/X.sh --help` prints its usage and exits: it passed --help on to the install and the run (a newcomer
    started the whole test pipeline that way). `python` and `pip` are stubs here that leave a mark if called."""
    import stat
    import subprocess

    for name in ("python", "pip"):
        stub = tmp_path / name
        stub.write_text(f"#!/bin/sh\ntouch {tmp_path}/called_{name}\n")
        stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    for flag in ("--help", "-h"):
        r = subprocess.run(["bash", os.path.join(ROOT, "tools", script), flag], capture_output=True, text=True, env=env)
        assert r.returncode == 0 and r.stdout.startswith(f"usage: bash tools/{script}"), (r.returncode, r.stdout)
    assert not list(tmp_path.glob("called_*")), f"{script} --help ran {[p.name for p in tmp_path.glob('called_*')]}"
