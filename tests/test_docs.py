"""The documentation runs: every `bash docs-test` block of every docs/*.md page, the README's first model, the
README's table of contents, docs/benchmarks.md's figures against the committed JSON, and the benchmark front door.

A page's blocks run in order in one `bash -euo pipefail` shell, cwd = repo root, PYTHONPATH = repo root and
`$DOCS_TMP` = a fresh temp dir for anything the commands write.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import benchmarks as bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
DOCS_TEST_BLOCK = re.compile(r"^```bash docs-test\n(.*?)^```$", re.S | re.M)
PAGE_TIMEOUT_S = 300  # a page's blocks take < 60 s on an idle 2-core machine; the margin is for a loaded one


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def docs_test_blocks(path: str):
    return DOCS_TEST_BLOCK.findall(read(path))


def python_first_on_path(tmp_path) -> str:
    """PATH with this interpreter as `python`, so the blocks run in the environment pytest runs in (a venv that
    is not activated, or a `python` on PATH that is another interpreter)."""
    bin_dir = os.path.dirname(sys.executable)
    if not os.path.samefile(shutil.which("python", path=bin_dir) or sys.executable, sys.executable):
        bin_dir = str(tmp_path / "bin")  # this interpreter's folder has no `python` of its own: give it one
        os.makedirs(bin_dir, exist_ok=True)
        os.symlink(sys.executable, os.path.join(bin_dir, "python"))
    return bin_dir + os.pathsep + os.environ.get("PATH", "")


def run_bash(script: str, tmp_path, timeout: int = PAGE_TIMEOUT_S) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT, DOCS_TMP=str(tmp_path), PATH=python_first_on_path(tmp_path))
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


TESTED = [p for p in PAGES if docs_test_blocks(p)]


@pytest.mark.slow
@pytest.mark.parametrize("page", TESTED, ids=[os.path.basename(p) for p in TESTED])
def test_docs_page_commands_run(page, tmp_path):
    blocks = docs_test_blocks(page)
    r = run_bash("\n".join(blocks), tmp_path)
    assert r.returncode == 0, (
        f"{os.path.relpath(page, ROOT)}: its {len(blocks)} docs-test block(s) exited "
        f"{r.returncode}\n--- stdout\n{r.stdout[-2000:]}\n--- stderr\n{r.stderr[-3000:]}"
    )


def test_docs_test_blocks_are_found():
    """The pattern must see the blocks of a page written the documented way (and only those)."""
    text = "x\n```bash docs-test\necho a\n```\n```bash\necho no\n```\n```bash docs-test\necho b\n```\n"
    assert DOCS_TEST_BLOCK.findall(text) == ["echo a\n", "echo b\n"]
    assert TESTED, f"no page under docs/ has a docs-test block: {PAGES}"


def test_blocks_run_this_interpreter(tmp_path, monkeypatch):
    """`python` in a block is the interpreter running the tests, even when PATH's `python` is another one."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "python").write_text("#!/bin/sh\necho not-this-python\n")
    (other / "python").chmod(0o755)
    monkeypatch.setenv("PATH", f"{other}{os.pathsep}{os.environ['PATH']}")
    r = run_bash('python -c "import sys; print(sys.executable)"', tmp_path)
    got = r.stdout.strip()
    assert r.returncode == 0 and os.path.realpath(got) == os.path.realpath(sys.executable), (
        f"`python` in a block ran {got!r} (exit {r.returncode}), not {sys.executable}"
    )


def test_readme_lists_every_docs_page():
    readme = read(os.path.join(ROOT, "README.md"))
    linked = set(re.findall(r"\(docs/([\w.-]+\.md)[#)]", readme))
    missing = sorted({os.path.basename(p) for p in PAGES} - linked)
    assert not missing, f"README.md's table of contents lacks {missing}: add a row for each"


def test_readme_first_model_runs(tmp_path):
    """The README's first ```python block builds the model and prints the logits shape it promises."""
    readme = read(os.path.join(ROOT, "README.md"))
    code = re.search(r"^```python\n(.*?)^```$", readme, re.S | re.M).group(1)
    promised = re.search(r"# (\[[\d, ]+\])", code).group(1)
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT_S,
    )
    assert r.returncode == 0, f"README first model exited {r.returncode}: {r.stderr[-2000:]}"
    assert r.stdout.strip().splitlines()[-1] == promised, f"printed {r.stdout.strip()!r}, README says {promised}"


def test_benchmark_figures_equal_committed_json():
    """Every row of docs/benchmarks.md's tables states what benchmark_full.json holds, at the printed precision."""
    page = read(os.path.join(ROOT, "docs", "benchmarks.md"))
    data = json.load(open(os.path.join(ROOT, "docs", "benchmarks", "benchmark_full.json")))
    rows = {(r["model"], r["path"]): r for r in data["rows"]}
    seen = 0
    for model, path, gflop, sec, x_floor, peak in re.findall(
        r"^\| (\w+) \| (\w+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \|$", page, re.M
    ):
        r = rows.pop((model, path), None)
        assert r is not None, f"docs/benchmarks.md has a row {model} {path} that benchmark_full.json lacks"
        want = (f"{r['gflop']:.1f}", f"{r['seconds']:.3f}", f"{r['x_floor']:.2f}", f"{r['peak_rss_mb']:.0f}")
        assert (gflop, sec, x_floor, peak) == want, f"{model} {path}: page {(gflop, sec, x_floor, peak)}, JSON {want}"
        seen += 1
    assert not rows, f"docs/benchmarks.md lacks the JSON rows {sorted(rows)}"
    ratios = dict(re.findall(r"^\| (\w+ [^|]+\(target [^|]+\)) \| ([\d.]+) \|$", page, re.M))
    want = {k: f"{v:.2f}" for k, v in data["ratios"].items()}
    assert ratios == want, f"ratios differ: page {ratios}, JSON {want}"
    m = data["matmul"]
    floor = f"paddle {m['paddle_gflops']:.1f} GFLOP/s, torch {m['torch_gflops']:.1f} GFLOP/s"
    assert floor in page, f"docs/benchmarks.md should state the matmul floor '{floor}'"
    assert seen >= 20, f"only {seen} rows parsed"
    deployment = read(os.path.join(ROOT, "docs", "deployment.md"))
    for path in ("dygraph", "deploy"):
        sec = f"{data_row(data, 'vit_s_linear', path)['seconds']:.3f} s"
        assert sec in deployment, f"docs/deployment.md should quote the ViT-S/16 {path} forward as in the JSON: {sec}"


def test_issue29_figures_equal_committed_json():
    """docs/benchmarks.md's fair-benchmark tables (forward at 512 and 768, training step, UPerNet, bf16) state what the
    committed JSON of each command holds, at the printed precision."""
    page = read(os.path.join(ROOT, "docs", "benchmarks.md"))
    load = lambda name: json.load(open(os.path.join(ROOT, "docs", "benchmarks", name)))  # noqa: E731
    for size in (512, 768):
        rows = load(f"versus_fair_{size}.json")[f"forward {size}"]["rows"]
        for name, r in rows.items():
            line = (
                f"| {name} | {r['median']:.3f} | {r['vs_reference']:.2f} | {r['x_floor']:.2f} ({r['floor']}) | "
                f"{r['cpu_median']:.2f} | {r['cpu_vs_reference']:.2f} | {r['peak_mb']:.0f} |"
            )
            assert line in page, f"docs/benchmarks.md should have the {size} row: {line}"
    for name, label in (("versus_fair_train.json", "every core"), ("versus_fair_train_1t.json", "one thread each")):
        r = load(name)["train 512"]["rows"]
        o, t, off = r["ours dygraph"], r["twin (PyTorch)"], r["official"]
        line = (
            f"| {label} (`{name}`) | {o['median']:.3f} | {t['median']:.3f} | {off['median']:.3f} | "
            f"**{o['vs_reference']:.2f}** | {o['cpu_vs_reference']:.2f} | {o['x_floor']:.2f} |"
        )
        assert line in page, f"docs/benchmarks.md should have the training row: {line}"
    for name, label in (("upernet.json", "every core"), ("upernet_1t.json", "one thread each")):
        r = list(load(name)["rows"].values())  # default path, dygraph, twin, MMSeg
        line = f"| {label} (`{name}`) | " + " | ".join(f"{x['median']:.3f}" for x in r)
        line += f" | **{r[0]['vs_mmseg']:.2f}** ("
        assert line in page, f"docs/benchmarks.md should have the UPerNet row: {line}"
    for size, r in load("bf16.json")["rows"].items():
        line = f"| {size}x{size} | 2 (every core) | {r['seconds']['fp32']:.3f} | {r['seconds']['bf16']:.3f} | "
        line += f"**{r['ratio']:.2f}** |"
        assert line in page, f"docs/benchmarks.md should have the bf16 row: {line}"


def test_quickstart_figures_equal_committed_json():
    """docs/training.md's quickstart table states what tools/quickstart.sh wrote (docs/benchmarks/quickstart.json):
    the timers, each evaluation row's mIoU, Acc, Kappa and Dice, and the augmented row's class IoU by name."""
    page = read(os.path.join(ROOT, "docs", "training.md"))
    data = json.load(open(os.path.join(ROOT, "docs", "benchmarks", "quickstart.json")))
    section = page.split("## Quickstart figures", 1)[1].split("\n## ", 1)[0]
    assert f"| train, then evaluation (the script's own timer) | {data['train_s']} s, {data['eval_s']} s |" in section
    assert f"`{data['commit']}`" in section and data["checkpoint"] in section, "the commit and checkpoint"
    for name, r in data["rows"].items():
        want = ", ".join(f"{k} {r[k]:.4f}" for k in ("mIoU", "Acc", "Kappa", "Dice"))
        assert f"| final, {name} | {want} |" in section, f"training.md's row '{name}' should read: {want}"
    name, r = list(data["rows"].items())[-1]
    classes = ", ".join(r["class_iou"])
    ious = ", ".join(f"{v:.4f}" for v in r["class_iou"].values())
    assert f"| class IoU, {name} ({classes}) | {ious} |" in section, f"training.md's class row should read: {ious}"


def data_row(data: dict, model: str, path: str) -> dict:
    return next(r for r in data["rows"] if (r["model"], r["path"]) == (model, path))


def test_benchmark_front_door_dispatches_topics(monkeypatch, capsys):
    """`tools/benchmark.py [topic] [args]`: a topic's main gets the arguments after it; options alone go to paths."""
    from benchmarks import paths, profile

    got = []
    monkeypatch.setattr(paths, "main", lambda argv: got.append(("paths", argv)))
    monkeypatch.setattr(profile, "main", lambda argv: got.append(("profile", argv)))
    bench.run(["profile", "--threads", "2"])
    bench.run(["--repeats", "1"])
    bench.run([])
    assert got == [("profile", ["--threads", "2"]), ("paths", ["--repeats", "1"]), ("paths", [])], f"dispatched {got}"
    assert {"paths", "profile"} <= set(bench.topics()), f"topics: {bench.topics()}"
    with pytest.raises(SystemExit):
        bench.run(["nosuch"])
    err = capsys.readouterr().err
    assert re.search("unknown topic 'nosuch'; choose one of .*paths.*profile", err), f"stderr: {err!r}"


@pytest.mark.slow  # a fresh interpreter that imports Paddle (~5 s)
def test_benchmark_child_runs_in_a_fresh_interpreter():
    """`paths` measures each path in `python -m benchmarks.paths --child ...` on this copy of the package."""
    from benchmarks import paths

    r = paths.run_child("matmul", "-", 1)
    assert r.get("paddle_gflops", 0) > 0 and r.get("torch_gflops", 0) > 0 and r["peak_rss_mb"] > 0, f"child: {r}"


def headings(path: str) -> list:
    return [h.strip() for h in re.findall(r"^#+ (.+)$", read(path), re.M)]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_pointers_to_doc_sections_exist():
    """`see README "Section"` in code, configs and docs, and [links](page.md#anchor), point at headings that exist
    (sections move between pages: a pointer left behind sends the reader nowhere)."""
    files = [os.path.join(ROOT, "README.md")] + [
        p
        for d in ("configs", "segmenter", "tools", "docs")
        for p in glob.glob(os.path.join(ROOT, d, "**", "*"), recursive=True)
        if p.endswith((".py", ".yml", ".md", ".sh"))
    ]
    dead = []
    for path in files:
        text = read(path)
        for page, title in re.findall(r"\bsee\s+(README(?:\.md)?|(?:docs/)?[\w-]+\.md)\s+\"([^\"\n]+)\"", text):
            target = os.path.join(
                ROOT,
                "README.md"
                if page.startswith("README")
                else page
                if page.startswith("docs/")
                else os.path.join("docs", page),
            )
            if not os.path.isfile(target) or title not in headings(target):
                dead.append(f'{os.path.relpath(path, ROOT)}: see {page} "{title}"')
        for page, anchor in re.findall(r"\]\(((?:[\w.-]+/)*[\w.-]+\.md)?#([\w-]+)\)", text):
            target = os.path.normpath(os.path.join(os.path.dirname(path), page)) if page else path
            if not os.path.isfile(target) or anchor not in {slug(h) for h in headings(target)}:
                dead.append(f"{os.path.relpath(path, ROOT)}: ({page}#{anchor})")
    assert not dead, "pointers to sections that do not exist:\n" + "\n".join(dead)


def test_the_readme_venv_is_ignored_by_git():
    """The README creates .venv inside the clone; git status must not list its thousands of files."""
    assert "python3.11 -m venv .venv" in read(os.path.join(ROOT, "README.md")), "the README no longer says so"
    r = subprocess.run(["git", "check-ignore", "-q", ".venv/bin/python"], cwd=ROOT)
    assert r.returncode == 0, ".venv/ is not in .gitignore"


def test_troubleshooting_quotes_the_shadowing_error(tmp_path):
    """Python started in the folder holding a clone named `segmenter` prints the error the page quotes; the fix
    it gives (run from inside the clone) imports the package."""
    import shutil

    clone = tmp_path / "segmenter"
    shutil.copytree(os.path.join(ROOT, "segmenter"), clone / "segmenter")  # the clone's layout: no __init__ on top
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(
        [sys.executable, "-c", "from segmenter import Inferencer"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if r.returncode == 0:
        pytest.skip(
            "this environment's installed segmenter is found before the current folder (not an editable "
            "install through an import hook), so nothing shadows it"
        )
    error = r.stderr.strip().splitlines()[-1].split(": ", 1)[1]
    page = read(os.path.join(ROOT, "docs", "troubleshooting.md"))
    assert f"`{error}`" in page, f"docs/troubleshooting.md does not quote Python's message: {error}"
    r = subprocess.run(
        [sys.executable, "-c", "from segmenter import Inferencer"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, f"the fix (run inside the clone) fails: {r.stderr[-1000:]}"
