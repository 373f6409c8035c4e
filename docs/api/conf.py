"""Sphinx configuration of interlock's API reference (docs/api/).

Everything here is generated from the docstrings of the installed package
(autodoc + napoleon) and, for the command line, from the argparse parser
itself (sphinx-argparse). Build it with warnings as errors:

    python -m sphinx -W --keep-going -b html docs/api docs/api/_build/html

(tests/test_docs.py does exactly this.)
"""
from __future__ import annotations

from importlib.metadata import version as _version

project = "interlock"
author = "interlock developers"
copyright = "2026, interlock developers"
release = _version("interlock")
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
]

# Members in source order, signatures with their annotations, no private names.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "alabaster"
html_static_path: list[str] = []
exclude_patterns = ["_build"]
