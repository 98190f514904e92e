"""The documentation: `sphinx-build -W` passes, and every Python example of the guide runs.

The examples are the fenced ```python blocks of docs/*.md and of README.md. The blocks of
one page run in order in one namespace, in a temporary directory, each as one test. Before
running, a block is made small:

- always: `epochs=N` -> `epochs=1`, `num_particles=N` -> at most 4, `num_samples=N` -> at
  most 16, and `/tmp/` -> the page's temporary directory;
- by HTML comments right above the block (invisible on the page):
  `<!-- test: replace "OLD" => "NEW" -->` (OLD must occur in the block; NEW may use
  `TINY_FIELDS`, the config fields of a few-second run on tiny data),
  `<!-- test: skip REASON -->`, `<!-- test: needs-preset NAME -->` (skipped until the
  preset ships) and `<!-- test: raises NAME -->` (the block must raise that builtin error).
"""

import builtins
import html as html_lib
import importlib.util
import os
import re
import subprocess
import sys

import pytest

from test_run_common import REPO, tiny_fields, write_tiny_mnist

DOCS = REPO / "docs"
README = REPO / "README.md"
MAX_README_LINES = 150

_FENCE_OPEN, _FENCE_CLOSE = "```python", "```"
_MARKER = re.compile(r"^<!-- test: (replace|skip|needs-preset|raises)\b\s*(.*?)\s*-->$")
_REPLACE = re.compile(r'^"(.*)" => "(.*)"$')
_SHRINK = [
    (re.compile(r"\bepochs=\d+"), lambda m: "epochs=1"),
    (re.compile(r"\bnum_particles=(\d+)"), lambda m: f"num_particles={min(int(m[1]), 4)}"),
    (re.compile(r"\bnum_samples=(\d+)"), lambda m: f"num_samples={min(int(m[1]), 16)}"),
]


def _blocks(path):
    """[(first line number, code, [(marker, argument), ...])] of the python blocks of a page."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, markers, i = [], [], 0
    while i < len(lines):
        match = _MARKER.match(lines[i].strip())
        if match:
            markers.append(match.groups())
        elif lines[i].strip() == _FENCE_OPEN:
            end = lines.index(_FENCE_CLOSE, i + 1)
            blocks.append((i + 2, "\n".join(lines[i + 1:end]) + "\n", markers))
            markers, i = [], end
        elif lines[i].strip():
            if markers:
                raise ValueError(f"{path.name}:{i + 1}: a `test:` comment must stand right above "
                                 "a ```python block")
        i += 1
    return blocks


def _pages():
    return sorted(DOCS.glob("*.md")) + [README]


_SNIPPETS = [(page, index) for page in _pages() for index in range(len(_blocks(page)))]


def _prepared(code, markers, tmp_dir):
    """The block's code after its replacements and the default shrinking."""
    for kind, argument in markers:
        if kind == "replace":
            old, new = _REPLACE.match(argument).groups()
            assert old in code, f"test: replace: {old!r} does not occur in the block"
            code = code.replace(old, new)
    for pattern, shrink in _SHRINK:
        code = pattern.sub(shrink, code)
    return code.replace("/tmp/", f"{tmp_dir}/")


def _skip_reason(markers):
    for kind, argument in markers:
        if kind == "skip":
            return argument
        if kind == "needs-preset":
            import rem_tf  # noqa: PLC0415

            if argument not in rem_tf.presets.list():
                return f"preset {argument!r} is not shipped yet"
    return None


_STATE = {}  # page -> {"namespace", "directory", "done": blocks run so far}


def _run(page, index, tmp_path_factory, monkeypatch):
    """Runs block `index` of `page`, after any earlier block not run yet (e.g. under -k)."""
    state = _STATE.get(page)
    if state is None:
        directory = tmp_path_factory.mktemp(page.stem)
        fields = tiny_fields(write_tiny_mnist(directory / "tiny_data"), epochs=1)
        state = _STATE[page] = {"namespace": {"__name__": "__docs__", "TINY_FIELDS": fields},
                                "directory": directory, "done": 0}
    monkeypatch.chdir(state["directory"])
    # `from configs import quick`, as from the repository root
    monkeypatch.syspath_prepend(str(REPO))
    blocks = _blocks(page)
    while state["done"] <= index:
        line, code, markers = blocks[state["done"]]
        state["done"] += 1
        reason = _skip_reason(markers)
        if reason is not None:
            if state["done"] - 1 == index:
                pytest.skip(reason)
            continue
        compiled = compile(_prepared(code, markers, state["directory"]), f"{page.name}:{line}",
                           "exec")
        raises = [getattr(builtins, arg) for kind, arg in markers if kind == "raises"]
        if raises:
            with pytest.raises(raises[0]):
                exec(compiled, state["namespace"])  # noqa: S102 - the docs' own examples
        else:
            exec(compiled, state["namespace"])  # noqa: S102


@pytest.mark.parametrize("page, index", _SNIPPETS,
                         ids=[f"{p.name}:{_blocks(p)[i][0]}" for p, i in _SNIPPETS])
def test_python_example_runs(page, index, tmp_path_factory, monkeypatch):
    _run(page, index, tmp_path_factory, monkeypatch)


def test_sphinx_build_has_no_warnings(tmp_path):
    if importlib.util.find_spec("sphinx") is None or importlib.util.find_spec("furo") is None:
        pytest.fail('Sphinx is not installed: pip install -e ".[test]" (or ".[docs]")')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    html = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(html)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-6000:]
    # RESULTS.md is included, not copied: its sections appear on the results page.
    sections = [line.lstrip("# ") for line in (REPO / "RESULTS.md").read_text().splitlines()
                if line.startswith("## ")]
    text = html_lib.unescape(re.sub(r"<[^>]+>", "", (html / "results.html").read_text("utf-8")))
    text = text.replace("\u2019", "'")  # Sphinx's smart quotes
    assert sections and all(title in text for title in sections), sections
    for module_page in ("rem_tf", "models", "estimators", "experiment", "export"):
        assert (html / "api" / f"{module_page}.html").is_file()


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"{README.name} has {len(lines)} lines"
