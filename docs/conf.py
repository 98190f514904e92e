"""Sphinx configuration of the rem_tf documentation (MyST Markdown, autodoc + napoleon).

Build (from the repository root, whose rem_tf `python -m` puts first on sys.path;
`pip install -e ".[docs]"` first):

  python -m sphinx -W -b html docs docs/_build/html

`tests/test_docs.py` runs the same build with -W (warnings are errors), so a broken
reference, a missing include or a public name without a docstring fails the tests.
"""

import importlib
import inspect
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # autodoc imports TensorFlow

project = "rem_tf"
author = "rem_tf contributors"
copyright = "2019-2026, rem_tf contributors"  # noqa: A001 - Sphinx's name

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath", "deflist"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links

napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False  # Keras's own docstrings are Markdown, not reST
autodoc_default_options = {"members": True, "show-inheritance": True}
autosummary_generate = False  # the API pages are written by hand; autosummary makes tables
default_role = "py:obj"  # `name` in a docstring links to the object when Sphinx knows it

html_theme = "furo"
html_title = "rem_tf"
html_static_path = []

# The public API: module -> where its public names are documented (docs/api/<page>.md).
API_MODULES = {
    "rem_tf": "api/rem_tf",
    "rem_tf.models": "api/models",
    "rem_tf.models.trainer": "api/trainer",
    "rem_tf.models.sampling": "api/sampling",
    "rem_tf.estimators": "api/estimators",
    "rem_tf.likelihoods": "api/likelihoods",
    "rem_tf.networks": "api/networks",
    "rem_tf.data": "api/data",
    "rem_tf.evaluation": "api/evaluation",
    "rem_tf.export": "api/export",
    "rem_tf.experiment": "api/experiment",
    "rem_tf.presets": "api/presets",
    "rem_tf.schedules": "api/schedules",
    "rem_tf.validation": "api/validation",
    "rem_tf.keras_compat": "api/keras_compat",
}


def public_callables(module_name):
    """Public functions and classes of a module: its `__all__`, else those defined in it
    or in its subpackage (`rem_tf.models`' classes live in `rem_tf.models.<method>`)."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, obj in vars(module).items() if not n.startswith("_")
                 and getattr(obj, "__module__", "").startswith(module_name)]
    return sorted(n for n in names
                  if inspect.isfunction(getattr(module, n)) or inspect.isclass(getattr(module, n)))


def _check_api_is_documented(app, env):
    """Warns (an error under -W) for every public function or class without an API entry:
    autodoc leaves out objects without a docstring, so this also catches those. A name
    that a module re-exports counts as documented where its home module documents it."""
    from sphinx.util import logging  # noqa: PLC0415

    documented = set(env.get_domain("py").objects)
    modules = {name: importlib.import_module(name) for name in API_MODULES}
    for module_name, page in API_MODULES.items():
        for name in public_callables(module_name):
            obj = getattr(modules[module_name], name)
            homes = {f"{other}.{name}" for other, module in modules.items()
                     if getattr(module, name, None) is obj}
            if not homes & documented:
                logging.getLogger(__name__).warning(
                    "%s.%s is public but not in the API reference (docs/%s.md): give it a "
                    "docstring", module_name, name, page)


# The docstrings are plain text in the project's style (Google sections, `code`, shapes
# such as [B, *input_shape], r(z|x), Markdown tables, indented examples after a colon);
# `_rest_safe` reads that style as reST instead of asking every docstring to escape it.
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_CODE_SPAN = re.compile(r"(``.+?``|`[^`]+`)")
_LONE_MARK = re.compile(r"(?<![*\\])\*(?!\*)|(?<!\\)\|")


def _cells(row):
    return [cell.strip().replace("\\|", "|")
            for cell in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def _list_table(rows, indent):
    """A Markdown table (header, |---| rule, rows) as a reST list-table."""
    out = [f"{indent}.. list-table::", f"{indent}   :header-rows: 1", ""]
    for row in [rows[0], *rows[2:]]:
        cells = [_escape(cell) for cell in _cells(row)]
        out += [f"{indent}   * - {cells[0]}", *(f"{indent}     - {c}" for c in cells[1:])]
    return out + [""]


def _escape(text):
    """`*` and `|` outside code spans escaped ([B, *input_shape] and r(z|x) are not markup),
    and code spans glued to a word (`Layer`s) separated by an escaped space."""
    parts = _CODE_SPAN.split(text)
    for i in range(0, len(parts), 2):
        parts[i] = _LONE_MARK.sub(lambda m: "\\" + m.group(0), parts[i])
        if i > 0 and parts[i][:1].isalnum():
            parts[i] = "\\ " + parts[i]
        if i + 1 < len(parts) and parts[i][-1:].isalnum():
            parts[i] += "\\ "
    return "".join(parts)


def _parses_cleanly(app, lines):
    """Whether docutils reads `lines` without a layout warning (indentation, lists)."""
    from docutils.core import publish_doctree  # noqa: PLC0415
    from docutils.utils import Reporter  # noqa: PLC0415

    messages = []
    settings = {"report_level": Reporter.SEVERE_LEVEL + 1, "halt_level": Reporter.SEVERE_LEVEL + 1,
                "env": app.env}  # Sphinx's roles (the default role py:obj) read it
    doctree = publish_doctree("\n".join(lines), settings_overrides=settings)
    for node in doctree.traverse(lambda n: n.tagname == "system_message"):
        if node["level"] >= Reporter.WARNING_LEVEL and "Unknown interpreted" not in node.astext():
            messages.append(node)
    return not messages


def _rest_safe(app, what, name, obj, options, lines):
    if what == "module" and not _parses_cleanly(app, _rest_safe_lines(lines)):
        lines[:] = ["::", "", *("   " + line for line in lines)]  # a plain-text layout, as written
    else:
        lines[:] = _rest_safe_lines(lines)


def _rest_safe_lines(lines):
    out, i, literal_indent = [], 0, None
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None and line.strip() and indent <= literal_indent:
            literal_indent = None
        if literal_indent is not None:
            out.append(line)
        elif line.rstrip().endswith("::"):  # already a literal block
            out.append(_escape(line))
            literal_indent = indent
        elif (_TABLE_ROW.match(line) and i + 1 < len(lines)
              and set(lines[i + 1].strip()) <= set("|-: ")):
            rows = []
            while i < len(lines) and _TABLE_ROW.match(lines[i]):
                rows.append(lines[i])
                i += 1
            out += _list_table(rows, line[:indent])
            continue
        else:
            nxt = next((later for later in lines[i + 1:] if later.strip()), "")
            starts_block = (line.rstrip().endswith(":") and not line.rstrip().endswith("::")
                            and i + 1 < len(lines) and not lines[i + 1].strip()
                            and len(nxt) - len(nxt.lstrip()) > indent
                            and not line.lstrip().startswith(":"))
            if starts_block:  # "Example:" + an indented block: a literal block, as written
                out.append(_escape(line.rstrip()) + ":")
                literal_indent = indent
            else:
                out.append(_escape(line))
        i += 1
    return out


def _explicit_reference_missing(app, env, node, contnode):
    """Warns for a {py:func}`...` reference of a guide page that names nothing. (Sphinx
    warns only in nitpicky mode, which would also flag every `code` span and type hint of
    the docstrings on the api/ pages.)"""
    if (node.get("refdomain") == "py" and node.get("reftype") != "obj"
            and not node.get("refdoc", "").startswith("api/")):
        from sphinx.util import logging  # noqa: PLC0415

        logging.getLogger(__name__).warning(
            "py:%s reference target not found: %s", node["reftype"], node["reftarget"],
            location=node)


def setup(app):
    app.connect("autodoc-process-docstring", _rest_safe)
    app.connect("missing-reference", _explicit_reference_missing)
    app.connect("env-check-consistency", _check_api_is_documented)
