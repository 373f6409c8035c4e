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


# The commands' epilogs are preformatted text for a terminal (columns,
# aligned notes), not reStructuredText, and sphinx-argparse would parse them
# as such. So cli.rst documents the parser of interlock.cli.build_parser()
# with the epilogs taken off (the module below), and the directive
# cli-epilogs shows each one as it is, read from the same parser.
import argparse  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402

from docutils import nodes  # noqa: E402
from sphinx.util.docutils import SphinxDirective  # noqa: E402


def _parser_without_epilogs() -> argparse.ArgumentParser:
    from interlock.cli import build_parser

    parser = build_parser()

    def strip(p: argparse.ArgumentParser) -> None:
        p.epilog = None
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    strip(sub)

    strip(parser)
    return parser


_docs_cli = types.ModuleType("_interlock_docs_cli")
_docs_cli.parser = _parser_without_epilogs  # type: ignore[attr-defined]
sys.modules[_docs_cli.__name__] = _docs_cli


class CliEpilogs(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        from interlock.cli import build_parser

        out: list[nodes.Node] = []

        def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for name, sub in action.choices.items():
                        if sub.epilog:
                            out.append(nodes.rubric(text=" ".join(["interlock", *path, name])))
                            out.append(nodes.literal_block(sub.epilog, sub.epilog))
                        walk(sub, [*path, name])

        walk(build_parser(), [])
        return out


def setup(app):  # type: ignore[no-untyped-def]
    app.add_directive("cli-epilogs", CliEpilogs)
