"""The documentation site: it builds with `mkdocs build --strict`, documents every public
object, its generated pages say what the code says, every snippet of its guides runs, and
it works in a real browser.

The site is built once per test process (`built_site`, in conftest). The browser checks
run headless Chromium on the built site, served over HTTP, offline: every page loads
with no console error and no failed request; the search finds `ada_ste`; the AdaSTE API
entry shows its formula as rendered math; the home page fits a phone's width, and is
captured at a desktop and a phone width into `$DOCS_SCREENSHOTS` (a temporary folder
unless set). They need the Playwright client (the test extra) and a Chromium binary:
Debian's `chromium` package (`apt-get install chromium`) or the path in `$CHROMIUM`;
Playwright's own browser download is not used. Without either they are skipped, with the
reason.
"""

import functools
import http.server
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "scripts"))

griffe = pytest.importorskip("griffe", reason="the [docs] extra is not installed")

# Modules of the front ends that are implementation details, documented in their source:
# the Keras 2 switch, and what the Keras 3 export and products use inside.
INTERNAL_MODULES = {
    "keras_bilevel.keras2.legacy_keras",
    "keras_bilevel.keras3._lce",
    "keras_bilevel.keras3.dense_product",
    "keras_bilevel.keras3.subprocess_jobs",
}


def _directives():
    """{object path: options text} of every `::: path` in the API pages."""
    found = {}
    for page in sorted((DOCS / "api").glob("*.md")):
        for match in re.finditer(r"^::: (\S+)\n((?:    .*\n)*)", page.read_text(), re.M):
            found[match.group(1)] = match.group(2)
    return found


@pytest.fixture(scope="module")
def package():
    from griffe_shared_docstrings import SharedDocstrings

    loader = griffe.GriffeLoader(search_paths=[str(ROOT)],
                                 extensions=griffe.Extensions(SharedDocstrings()))
    loaded = loader.load("keras_bilevel")
    loader.resolve_aliases(implicit=False, external=False)
    return loaded


def test_site_builds_strict(built_site):
    assert (built_site / "index.html").is_file()
    for page in ("getting-started", "method", "guides/cli", "guides/troubleshooting",
                 "benchmarks", "api/keras2", "api/keras3", "api/export", "changelog"):
        assert (built_site / page / "index.html").is_file(), page


def test_every_front_end_module_is_in_the_api_reference():
    documented = set(_directives())
    for front_end in ("keras2", "keras3"):
        for path in sorted((ROOT / "keras_bilevel" / front_end).glob("*.py")):
            name = f"keras_bilevel.{front_end}.{path.stem}"
            if path.stem == "__init__" or name in INTERNAL_MODULES:
                continue
            assert name in documented, f"{name} is not on an API page (docs/api/)"


@pytest.mark.parametrize("path", sorted(_directives()))
def test_every_public_object_has_a_docstring(package, path):
    """What each `:::` shows: the object, and every name of a module's `__all__`."""
    obj = package[path.split(".", 1)[1]]
    assert obj.docstring is not None and obj.docstring.value.strip(), f"{path}: no docstring"
    if not obj.is_module or "members: false" in _directives()[path]:
        return
    names = [name if isinstance(name, str) else name.name for name in obj.exports or ()]
    assert names, f"{path} has no __all__"
    undocumented = []
    for name in names:
        member = obj[name]
        if member.is_alias and member.target.is_module:
            continue  # a submodule: documented by its own directive
        if member.docstring is None or not member.docstring.value.strip():
            undocumented.append(name)
    assert not undocumented, f"{path}: no docstring for {undocumented}"


def test_cli_page_lists_every_argument(built_site):
    from keras_bilevel.cli import parser as cli_parser

    page = (built_site / "guides" / "cli" / "index.html").read_text()
    parser = cli_parser.build_parser()
    subcommands = next(action for action in parser._actions if action.choices)
    for name, command in subcommands.choices.items():
        assert f"keras-bilevel {name}" in page
        for action in command._actions:
            for option in action.option_strings:
                assert option in page, f"{name} {option} missing from the CLI page"


def test_troubleshooting_page_lists_every_error(built_site):
    import error_catalogue

    page = (built_site / "guides" / "troubleshooting" / "index.html").read_text()
    entries = error_catalogue.messages(ROOT / "keras_bilevel")
    assert len(entries) > 100
    assert page.count("<li><strong>") >= len(entries)
    # Two messages, as a user sees them (values shown as ‹name›).
    assert "--resume needs --output DIR, the directory of the run to continue" in page
    assert "AdaSTE: <code>variant</code> must be one of ‹variants›" in page


def test_error_catalogue_reads_messages_built_elsewhere(tmp_path):
    import error_catalogue

    (tmp_path / "hints.py").write_text(
        "def missing_message(what):\n"
        "    return f'{what} is missing: {install_hint(what)}'\n")
    (tmp_path / "module.py").write_text(
        "_TEMPLATE = 'bound to {where}; import it first'\n"
        "def f(x, args):\n"
        "    raise ValueError(f'`x` must be > 0, got {x!r}; ' + 'try 1')\n"
        "    raise ImportError(_TEMPLATE.format(where=x))\n"
        "    raise ImportError(hints.missing_message('larq') + '; or not')\n"
        "    raise KeyError(args.dataset_name)\n")
    assert error_catalogue.messages(tmp_path) == [
        ("module", "ValueError", "`x` must be > 0, got ‹x›; try 1"),
        ("module", "ImportError", "bound to ‹where›; import it first"),
        ("module", "ImportError", "‹what› is missing: ‹install hint›; or not")]


def test_math_is_rendered_to_mathml():
    from docs_hooks import render_math

    html = render_math(r"<p>scale \(1/(1+\mu)\)</p><pre><code>\(kept\)</code></pre>")
    assert "<math" in html and "<mi>&#x003BC;</mi>" in html  # mu
    assert r"<code>\(kept\)</code>" in html


# --- The guides' snippets -------------------------------------------------------------

_FENCE = re.compile(r"(<!-- not run: [^>]*-->\n)?```python\n(.*?)```", re.DOTALL)
GUIDES = sorted(path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")
                if "```python" in path.read_text())


def snippets(page):
    """The page's Python blocks, in order; a block after `<!-- not run: why -->` is left out."""
    return [code for skip, code in _FENCE.findall((DOCS / page).read_text()) if not skip]


def test_a_guide_has_snippets_that_run():
    assert "getting-started.md" in GUIDES and snippets("getting-started.md")


def scripts(page):
    """The page's blocks as scripts: in order, one process each run of blocks; a block that
    sets `KERAS_BACKEND` starts a new one (Keras reads it once per process)."""
    groups = []
    for code in snippets(page):
        if not groups or "KERAS_BACKEND" in code:
            groups.append([])
        groups[-1].append(code)
    return ["\n".join(group) for group in groups]


@pytest.mark.parametrize("page", GUIDES)
def test_guide_snippets_run(page, tmp_path):
    """Each page's blocks run as a reader runs them, offline, in fresh processes."""
    codes = scripts(page)
    if not codes:
        pytest.skip(f"{page}: every block needs what a test cannot have (see its notes)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KERAS_BACKEND", None)
    for number, code in enumerate(codes):
        script = tmp_path / f"snippets_{number}.py"
        script.write_text(code)
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, (
            f"{page}, script {number}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


# --- In a browser ----------------------------------------------------------------------
CHROMIUM = os.environ.get("CHROMIUM") or next(
    (path for path in map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))
     if path), None)

VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site_url(built_site):
    handler = functools.partial(_QuietHandler, directory=str(built_site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="the Playwright client is not installed "
                                          "(pip install playwright)")
    if CHROMIUM is None:
        pytest.skip("no Chromium binary: apt-get install chromium (or set $CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=dict(zip(("width", "height"),
                                                    VIEWPORTS["desktop"])))
    opened = context.new_page()
    opened.problems = []
    opened.on("console", lambda message: message.type == "error" and opened.problems.append(
        f"console: {message.text}"))
    opened.on("pageerror", lambda error: opened.problems.append(f"page error: {error}"))
    # (ERR_ABORTED: a request the next navigation cancelled, as the favicon's may be.)
    opened.on("requestfailed", lambda request: "ERR_ABORTED" not in str(
        request.failure) and opened.problems.append(
        f"request failed: {request.url} ({request.failure})"))
    opened.on("response", lambda response: response.status >= 400 and opened.problems.append(
        f"HTTP {response.status}: {response.url}"))
    yield opened
    context.close()


def site_pages(site):
    return sorted(path.parent.relative_to(site).as_posix() + "/"
                  for path in pathlib.Path(site).rglob("index.html")
                  if "assets" not in path.parts)


def test_every_page_loads_without_errors(built_site, site_url, page):
    pages = site_pages(built_site)
    assert len(pages) >= 15
    for path in pages:
        path = "" if path == "./" else path
        response = page.goto(site_url + path, wait_until="load")
        assert response.status == 200, path
        assert page.locator("h1").count() >= 1, f"{path}: no title"
    assert not page.problems, "\n".join(page.problems)


def test_search_finds_ada_ste(site_url, page):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(site_url, wait_until="load")
    query = page.locator("input[data-md-component=search-query]")
    query.click()  # the header's search field (desktop width)
    # The browser builds the search index when the page opens (seconds, more under load);
    # a query typed before it is ready is not run again, so type it until it is answered.
    found = 0
    for _ in range(40):
        query.fill("")
        query.press_sequentially("ada_ste")  # key by key, as a user types
        try:
            page.wait_for_function("document.querySelectorAll("
                                   "'.md-search-result__item').length >= 3", timeout=3_000)
        except PlaywrightTimeout:
            continue
        found = page.locator(".md-search-result__item").count()
        break
    assert found >= 3, "the search gave no results for ada_ste"
    assert "ada_ste" in page.locator(".md-search-result").inner_text().lower()
    assert not page.problems, "\n".join(page.problems)


def test_the_adaste_entry_shows_its_formula(site_url, page):
    page.goto(site_url + "api/keras2/", wait_until="load")
    entry = page.locator("[id='keras_bilevel.keras2.quantizers.AdaSTE'] + div")
    formulas = entry.locator("math")
    assert formulas.count() >= 3
    box = formulas.first.bounding_box()
    assert box and box["width"] > 20 and box["height"] > 10  # laid out as math, not text
    assert "\\mathrm" not in entry.inner_text()  # no TeX source left unrendered
    assert not page.problems, "\n".join(page.problems)


@pytest.mark.parametrize("name", sorted(VIEWPORTS))
def test_home_page_fits_and_is_captured(site_url, browser, name, tmp_path):
    width, height = VIEWPORTS[name]
    context = browser.new_context(viewport={"width": width, "height": height})
    home = context.new_page()
    home.goto(site_url, wait_until="load")
    assert home.evaluate("document.documentElement.scrollWidth") <= width
    folder = pathlib.Path(os.environ.get("DOCS_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / f"home-{name}.png"
    home.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    context.close()
