"""MkDocs hooks: the parts of the documentation site that are generated, so they cannot drift.

- `<!-- include: FILE -->` in a page is replaced by that repository file (the README is the
  home page, BENCHMARKS.md the benchmarks page, CONTRIBUTING.md the contributing page),
  with its repository-relative links made relative to the site (`docs/method.md` becomes
  `method.md`, `BENCHMARKS.md#x` becomes `benchmarks.md#x`);
- `<!-- cli-reference -->` becomes the reference of every `keras-bilevel` command, read
  from the parser itself (`keras_bilevel.cli.parser.build_parser`);
- `<!-- error-catalogue -->` becomes every error message the package raises, read from
  its source by `scripts/error_catalogue.py`;
- the benchmark plots (`benchmarks/results/*.png`) are published beside the pages that
  show them;
- TeX between `\\( \\)` or `\\[ \\]` (the docstrings' formulas, `pymdownx.arithmatex`
  output) is rendered to MathML when the site is built, so formulas show without
  JavaScript and with no network.

This file is read by `mkdocs` only (`hooks:` in `mkdocs.yml`); the package does not import it.
"""

import argparse
import html
import pathlib
import re
import sys

from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import error_catalogue  # noqa: E402
from keras_bilevel.cli import parser as cli_parser  # noqa: E402  (light: no framework)

_INCLUDE = re.compile(r"^<!-- include: (\S+) -->$", re.MULTILINE)
# Repository files that are pages of the site, by their path from the repository root.
_ROOT_PAGES = {"README.md": "index.md", "BENCHMARKS.md": "benchmarks.md",
               "CONTRIBUTING.md": "contributing.md", "docs/": ""}
_LINK = re.compile(r"\]\((README\.md|BENCHMARKS\.md|CONTRIBUTING\.md|docs/)")


def _site_links(markdown):
    """Links written for the repository (GitHub) as links between pages of the site."""
    return _LINK.sub(lambda match: "](" + _ROOT_PAGES[match.group(1)], markdown)


def _include(match):
    return _site_links((ROOT / match.group(1)).read_text(encoding="utf-8"))


def _option_row(action):
    names = (", ".join(f"`{name}`" for name in action.option_strings)
             or f"`{action.metavar or action.dest}`")
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        names += "<br>" + " \\| ".join(f"`{choice}`" for choice in action.choices)
    default = action.default
    shown = "" if default in (None, argparse.SUPPRESS, False) or action.option_strings == [
        "-h", "--help"] else f"`{default}`"
    text = (action.help or "").replace("%(default)s", str(default)).replace("|", "\\|")
    return f"| {names} | {shown} | {' '.join(text.split())} |"


def cli_reference():
    """Markdown of every `keras-bilevel` command: usage, then a table of its arguments."""
    parser = cli_parser.build_parser()
    commands = next(action for action in parser._actions
                    if isinstance(action, argparse._SubParsersAction))
    summaries = {action.dest: action.help for action in commands._choices_actions}
    parts = []
    for name, command in commands.choices.items():
        usage = " ".join(command.format_usage().split())
        parts += [f"### `keras-bilevel {name}`", "", f"{summaries[name].capitalize()}.", "",
                  "```text", usage, "```", "", "| argument | default | what it does |",
                  "|---|---|---|"]
        parts += [_option_row(action) for action in command._actions
                  if action.help != argparse.SUPPRESS]
        parts.append("")
    return "\n".join(parts)


def on_files(files, config):
    """Publish the benchmark plots at `benchmarks/results/NAME.png` in the site."""
    for plot in sorted((ROOT / "benchmarks" / "results").glob("*.png")):
        if not plot.name.endswith("_smoke.png"):
            files.append(File(f"benchmarks/results/{plot.name}", str(ROOT),
                              config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    markdown = _INCLUDE.sub(_include, markdown)
    markdown = markdown.replace("<!-- cli-reference -->", cli_reference())
    markdown = markdown.replace("<!-- error-catalogue -->",
                                error_catalogue.markdown(ROOT / "keras_bilevel"))
    return markdown


_SKIP = re.compile(r"(<(pre|code|script|style)\b.*?</\2>)", re.DOTALL)
_MATH = re.compile(r"\\\[(.+?)\\\]|\\\((.+?)\\\)", re.DOTALL)


def _to_mathml(match):
    from latex2mathml.converter import convert

    display = match.group(1) is not None
    tex = html.unescape(match.group(1) if display else match.group(2)).strip()
    return convert(tex, display="block" if display else "inline")


def render_math(page_html):
    """`\\(..\\)` and `\\[..\\]` outside code blocks, as MathML (no script needed)."""
    pieces = _SKIP.split(page_html)
    out = []
    index = 0
    while index < len(pieces):
        text = pieces[index]
        out.append(_MATH.sub(_to_mathml, text))
        if index + 1 < len(pieces):
            out.append(pieces[index + 1])  # a code block, untouched
        index += 3
    return "".join(out)


def on_page_content(page_html, page, config, files):
    return render_math(page_html)
