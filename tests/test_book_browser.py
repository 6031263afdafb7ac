"""The rendered book in a real browser: offline-complete pages, drawn widgets, typeset equations.

Builds the book as `make book` does (same strict flags) but with MICROGPT_SMOKE=1 so the notebooks
run short, into a temporary folder (or takes the build named by MICROGPT_BOOK_HTML); serves it on
127.0.0.1; and opens the front page and every chapter of _toc.yml in headless Chromium
(tests/chromium.py), where every host name but 127.0.0.1 is unresolvable; then again 420 px
wide, the width of a phone, where nothing may stick out of the text column. Screenshots of each
page at both widths are saved in artifacts/book/. Where no Chromium can be found the whole module is skipped with
a warning (CI installs Debian's chromium with apt).
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import nbformat
import pytest
import yaml
from chromium import Chromium, DevToolsError, find_chromium

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "book"
BUILD_TIMEOUT_S = 1800  # a short-mode build of every chapter takes several minutes
CHAPTER_1 = "chapters/01_scalar_autograd"
# The front page's labelled equation (book/intro.md, label eq-loss): it must come out typeset.
KNOWN_EQUATION_ID = "equation-eq-loss"
NARROW_WIDTH = 420

CHROMIUM = find_chromium()
if CHROMIUM is None:
    NO_CHROMIUM = ("NO CHROMIUM: the browser test of the book did NOT run. Install Debian's "
                   "chromium (apt-get install chromium) or set MICROGPT_CHROMIUM to a Chromium "
                   "binary; .ci/run installs it.")
    warnings.warn(NO_CHROMIUM, stacklevel=1)
    pytestmark = pytest.mark.skip(reason=NO_CHROMIUM)


def toc_pages() -> list[str]:
    """Document names of the book in reading order: the root, then every file in _toc.yml."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                pages.append(entry["file"])
            for key in ("chapters", "sections", "parts"):
                walk(entry.get(key, []))

    walk([toc])
    return [str(Path(p).with_suffix("")) for p in pages]


# Run in the page once it has loaded: waits for MathJax and the widgets, then describes the page.
DESCRIBE_PAGE_JS = r"""
(async () => {
  const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const views = [...document.querySelectorAll(
      'script[type="application/vnd.jupyter.widget-view+json"]')];
  const drawnFor = view => {
    const area = view.previousElementSibling;
    return area && area.classList.contains('widget-subarea') ? area : null;
  };
  for (let i = 0; i < 150 && views.some(v => !drawnFor(v)); i++) await sleep(100);
  for (const img of document.images) img.loading = 'eager';
  const images = await Promise.all([...document.images].map(img => img.decode().then(
      () => ({src: img.currentSrc || img.src, ok: img.naturalWidth > 0}),
      () => ({src: img.currentSrc || img.src, ok: false}))));
  const box = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const stateTag = document.querySelector(
      'script[type="application/vnd.jupyter.widget-state+json"]');
  const maths = [...document.querySelectorAll('.math')];
  const known = document.getElementById('""" + KNOWN_EQUATION_ID + r"""');
  return {
    images,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    widget_views: views.length,
    widget_view_models: views.map(v => JSON.parse(v.textContent).model_id),
    widget_areas_per_view: views.map(v => {
      let n = 0;
      for (let el = v.previousElementSibling; el && el.classList.contains('widget-subarea');
           el = el.previousElementSibling) n++;
      return n;
    }),
    widgets_drawn: views.filter(v => drawnFor(v) && box(drawnFor(v))
        && drawnFor(v).querySelector('.jupyter-widgets')).length,
    widget_state: stateTag ? JSON.parse(stateTag.textContent) : null,
    slider_readouts: [...document.querySelectorAll('.widget-slider .widget-readout')]
        .map(el => el.textContent.trim()),
    buttons: [...document.querySelectorAll('.widget-subarea button')]
        .filter(box).map(el => el.textContent.trim()),
    math_total: maths.length,
    math_typeset: maths.filter(el => el.querySelector('mjx-container') && box(el)).length,
    math_errors: document.querySelectorAll('mjx-merror').length,
    math_raw: maths.filter(el => !el.querySelector('mjx-container'))
        .map(el => el.textContent.slice(0, 80)),
    known_equation: known ? {typeset: !!known.querySelector('mjx-container'),
                             text: known.textContent.slice(0, 200)} : null,
    text: document.querySelector('main') ? document.querySelector('main').innerText : '',
  };
})()
"""


# Run once the page is 420 px wide: what sticks out to the right of the text column. An element
# inside a box that scrolls or clips horizontally (a code cell, a table, a display equation) is
# fine: the reader scrolls that box, not the page. Only the outermost element that sticks out is
# reported, not everything inside it.
NARROW_PAGE_JS = r"""
(async () => {
  await new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  const column = document.querySelector('article.bd-article') || document.querySelector('main');
  const right = column.getBoundingClientRect().right + 1;
  const boxed = el => {
    for (let a = el.parentElement; a && a !== column; a = a.parentElement) {
      if (['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(a).overflowX)) {
        return true;
      }
    }
    return false;
  };
  const sticksOut = el => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && r.right > right && !boxed(el);
  };
  const wide = [...column.querySelectorAll('*')]
    .filter(el => sticksOut(el) && !(el.parentElement !== column && sticksOut(el.parentElement)))
    .map(el => `<${el.tagName.toLowerCase()} class="${el.className && el.className.baseVal
        !== undefined ? el.className.baseVal : el.className}"> ${Math.round(
        el.getBoundingClientRect().right - right)} px too wide: `
        + (el.innerText || el.textContent || '').trim().slice(0, 60));
  const box = column.getBoundingClientRect();
  return {page_width: document.documentElement.scrollWidth, viewport: window.innerWidth,
          column: [Math.round(box.left), Math.round(box.right)],
          wide: wide.slice(0, 12), n_wide: wide.length};
})()
"""


@dataclass
class PageReport:
    """What one page did in the browser: its problems, and what it drew."""

    url: str
    problems: list[str] = field(default_factory=list)
    description: dict = field(default_factory=dict)
    narrow: dict = field(default_factory=dict)


def browser_problems(events: list[dict], origin: str) -> list[str]:
    """Console errors, exceptions, failed or refused requests, and requests leaving the machine."""
    urls, problems = {}, []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            urls[params["requestId"]] = url
            if urlsplit(url).scheme in ("http", "https", "ws", "wss") \
                    and not url.startswith(origin):
                problems.append(f"request leaves the machine: {url}")
        elif method == "Network.loadingFailed":
            problems.append(f"request failed ({params['errorText']}): "
                            f"{urls.get(params['requestId'], '?')}")
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            problems.append(f"HTTP {params['response']['status']}: {params['response']['url']}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            problems.append(f"uncaught exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            problems.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            problems.append(f"browser error: {params['entry']['text']} "
                            f"{params['entry'].get('url', '')}")
    return problems


class QuietHandler(SimpleHTTPRequestHandler):
    """Static files, without a log line per request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def stage_executed_book(executed: dict[Path, dict], into: Path) -> Path | None:
    """A copy of the book's sources whose chapters are the notebooks nbmake ran in this session
    (with their outputs) and whose configuration says not to execute them again; None unless
    every notebook of the book has been run."""
    chapters = [ROOT / f"{page}.ipynb" for page in toc_pages()
                if (ROOT / f"{page}.ipynb").exists()]
    if not chapters or not all(path.resolve() in executed for path in chapters):
        return None
    for name in ("_toc.yml", "book"):
        source = ROOT / name
        copy = shutil.copytree if source.is_dir() else shutil.copy2
        copy(source, into / name)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    (into / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    for path in chapters:
        target = into / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(executed[path.resolve()], target)
    return into


@pytest.fixture(scope="module")
def built_book(tmp_path_factory: pytest.TempPathFactory, executed_notebooks) -> Path:
    """The book built in short mode with `make book`'s flags; returns its html folder.

    Under `pytest --nbmake` the chapters have already run (the browser test runs last): the book
    is rendered from those executed notebooks. Otherwise the build runs every chapter itself.
    MICROGPT_BOOK_HTML=_build/html checks an existing build instead (e.g. the full one that
    `make book` wrote) without building again.
    """
    existing = os.environ.get("MICROGPT_BOOK_HTML")
    if existing:
        return Path(existing).resolve()
    vendor = subprocess.run([sys.executable, str(ROOT / "book" / "vendor" / "vendor.py")],
                            capture_output=True, text=True)
    assert vendor.returncode == 0, f"vendoring the book's JavaScript failed:\n{vendor.stderr}"
    out = tmp_path_factory.mktemp("book")
    source = stage_executed_book(executed_notebooks, tmp_path_factory.mktemp("source")) or ROOT
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    env = dict(os.environ, MICROGPT_SMOKE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    build = subprocess.run(
        [str(jupyter_book), "build", "--all", "-W", "-n", "--keep-going", str(source),
         "--path-output", str(out)],
        capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT_S)
    assert build.returncode == 0, ("the book did not build:\n" + build.stdout[-6000:]
                                   + build.stderr[-3000:])
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def served_book(built_book: Path):
    """The built book served over HTTP on 127.0.0.1; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 partial(QuietHandler, directory=str(built_book)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def reports(served_book: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, PageReport]:
    """Open every page of the book in Chromium once; return what each did, by document name."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    profile = tmp_path_factory.mktemp("chromium")
    browser = Chromium(CHROMIUM, profile / "profile", ARTIFACTS / "chromium.log")
    results = {}
    try:
        for page in toc_pages():
            url = served_book + page + ".html"
            session = browser.new_page()
            browser.call("Page.navigate", {"url": url}, session=session)
            browser.wait_for_event(session, "Page.loadEventFired")
            report = PageReport(url)
            try:
                report.description = browser.evaluate(session, DESCRIBE_PAGE_JS, timeout=60)
                browser.wait_network_idle(session)
            except DevToolsError as exc:
                report.problems.append(str(exc))
            report.problems += browser_problems(browser.events(session), served_book)
            name = page.replace("/", "__")
            browser.screenshot(session, ARTIFACTS / f"{name}.png")
            browser.call("Emulation.setDeviceMetricsOverride",
                         {"width": NARROW_WIDTH, "height": 900, "deviceScaleFactor": 1,
                          "mobile": False}, session=session)
            try:
                report.narrow = browser.evaluate(session, NARROW_PAGE_JS, timeout=60)
            except DevToolsError as exc:
                report.problems.append(f"at {NARROW_WIDTH} px: {exc}")
            browser.screenshot(session, ARTIFACTS / f"{name}__{NARROW_WIDTH}px.png",
                               width=NARROW_WIDTH)
            results[page] = report
    finally:
        browser.close()
    return results


def displayed_models(state: dict, view_model_ids: list[str]) -> list[dict]:
    """The saved widget models that the page displays: its views and all they contain."""
    shown, stack = {}, list(view_model_ids)
    while stack:
        model_id = stack.pop()
        if model_id in shown or model_id not in state:
            continue
        shown[model_id] = state[model_id]
        stack += re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(state[model_id]["state"]))
    return list(shown.values())


def fetch(url: str, cache: dict[str, str | None]) -> str | None:
    """Body of a page served by the test server (None for an HTTP error), fetched once."""
    if url not in cache:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                cache[url] = response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError:
            cache[url] = None
    return cache[url]


@pytest.mark.parametrize("page", toc_pages())
def test_page_loads_offline_without_console_errors_or_failed_requests(reports, page):
    report = reports[page]
    assert not report.problems, f"{report.url}:\n" + "\n".join(report.problems)


@pytest.mark.parametrize("page", toc_pages())
def test_tables_are_rendered_not_left_as_markdown_pipes(reports, served_book, page):
    body = fetch(reports[page].url, {})
    assert body is not None, f"{page} is missing"
    raw = [line.strip()[:100] for line in body.splitlines() if "<p>| " in line]
    assert not raw, f"{page}: tables printed as raw Markdown pipes:\n" + "\n".join(raw)


@pytest.mark.parametrize("page", toc_pages())
def test_nothing_is_wider_than_the_text_column_on_a_narrow_screen(reports, page):
    narrow = reports[page].narrow
    assert narrow, f"{page} was not measured at {NARROW_WIDTH} px"
    assert not narrow["wide"], (f"{page} at {NARROW_WIDTH} px: {narrow['n_wide']} elements stick "
                                "out of the text column:\n" + "\n".join(narrow["wide"]))
    assert narrow["page_width"] <= narrow["viewport"], \
        f"{page} scrolls sideways at {NARROW_WIDTH} px: {narrow['page_width']} px wide"
    left, right = narrow["column"]
    assert left >= 0 and right <= narrow["viewport"], \
        f"{page}: the text column spans {left}..{right} px of a {narrow['viewport']} px screen"


@pytest.mark.parametrize("page", toc_pages())
def test_every_image_loads(reports, page):
    images = reports[page].description["images"]
    broken = [image["src"][:120] for image in images if not image["ok"]]
    assert not broken, f"{page}: images that did not load: {broken}"


@pytest.mark.parametrize("page", toc_pages())
def test_internal_links_resolve(reports, served_book, page):
    origin = served_book
    cache: dict[str, str | None] = {}
    broken = []
    for link in sorted(set(reports[page].description["links"])):
        if not link.startswith(origin):
            continue
        target, fragment = urldefrag(link)
        body = fetch(target, cache)
        if body is None:
            broken.append(f"{link} (missing page)")
        elif fragment and not any(f'{attr}="{html.escape(unquote(fragment))}"' in body
                                  for attr in ("id", "name")):
            broken.append(f"{link} (no anchor #{fragment})")
    assert not broken, f"{page}: broken internal links:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", toc_pages())
def test_equations_are_typeset_by_mathjax_not_left_as_tex(reports, page):
    info = reports[page].description
    assert not info["math_raw"], f"{page}: equations left as raw TeX: {info['math_raw']}"
    assert info["math_errors"] == 0, f"{page}: {info['math_errors']} MathJax errors"
    assert info["math_typeset"] == info["math_total"], \
        f"{page}: {info['math_typeset']} of {info['math_total']} equations drawn"


def test_front_page_known_equation_is_rendered_as_mathjax_output(reports):
    known = reports[toc_pages()[0]].description["known_equation"]
    assert known is not None, f"the front page lost its labelled equation #{KNOWN_EQUATION_ID}"
    assert known["typeset"], f"#{KNOWN_EQUATION_ID} was not typeset: {known['text']!r}"
    assert "\\frac" not in known["text"] and "\\sum" not in known["text"], known["text"]


def test_chapter_1_equations_are_rendered(reports):
    info = reports[CHAPTER_1].description
    assert info["math_total"] > 0, "chapter 1 shows no equation at all"
    assert info["math_typeset"] == info["math_total"]


def test_chapter_1_widgets_are_drawn_once_with_their_saved_values(reports):
    info = reports[CHAPTER_1].description
    assert info["widget_views"] > 0, "chapter 1 saved no widget view"
    assert info["widgets_drawn"] == info["widget_views"], \
        f"{info['widgets_drawn']} of {info['widget_views']} widget views drawn"
    assert set(info["widget_areas_per_view"]) == {1}, \
        f"each widget view must be drawn once, got {info['widget_areas_per_view']}"
    shown = displayed_models(info["widget_state"]["state"], info["widget_view_models"])
    sliders = [m["state"] for m in shown if m["model_name"] in
               ("IntSliderModel", "FloatSliderModel", "FloatLogSliderModel")]
    assert sliders, "chapter 1 shows no slider"
    readouts = [float(text) for text in info["slider_readouts"]]
    for slider in sliders:
        value = slider["value"]
        assert any(abs(r - value) <= max(0.005, 0.01 * abs(value)) for r in readouts), \
            f"slider {slider.get('description')!r} saved {value}, page shows {readouts}"
    assert info["buttons"], "chapter 1 draws no button"


def test_a_page_with_a_train_button_says_it_needs_a_live_kernel(reports):
    for page, report in reports.items():
        info = report.description
        if any("train" in text.lower() for text in info["buttons"]):
            assert re.search(r"\blive\b(\s+\w+)?\s+kernel", info["text"], re.IGNORECASE), \
                f"{page} draws a Train button but does not say it needs a live kernel"


def test_launch_buttons_appear_only_with_a_repository_address(reports):
    repository = (yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
                  or "").strip()
    owner_repo = repository.removeprefix("https://github.com/")
    for page in toc_pages()[1:]:
        links = reports[page].description["links"]
        launchers = [link for link in links if link.startswith(
            ("https://colab.research.google.com/", "https://mybinder.org/"))]
        if not repository:
            assert not launchers, f"{page}: launch buttons without a repository: {launchers}"
            continue
        expected = [f"https://colab.research.google.com/github/{owner_repo}/blob/",
                    f"https://mybinder.org/v2/gh/{owner_repo}/", repository]
        for prefix in expected:
            assert any(link.startswith(prefix) for link in links), f"{page}: no link to {prefix}"
