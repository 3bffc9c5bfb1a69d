"""The web page (``service/web``): its headers and files over HTTP, then the page itself in a
real headless Chromium against real ``storyboard serve`` processes.

The browser tests need Debian's ``chromium`` and ``chromium-driver``; without them the suite
leaves them out with one closing line saying how to install them (``tests/conftest.py``),
and nothing else here is skipped. Selenium drives the system chromedriver through a
Service, so Selenium Manager never downloads anything. The tests also take the screenshots
the README shows: into a temporary folder, so a test run leaves the tree clean, or, with
``STORYBOARD_SCREENSHOTS=docs/screenshots``, over the committed ones to refresh them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.common.print_page_options import PrintOptions
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from harness.browser import INSTALL_HINT, find_chromium
from harness.processes import ROOT, ServiceProcess, running_service, service_env
from service.app import create_app
from tests.conftest import SettingsFactory, corpus_file, prepare
from tests.fake_llm import FakeLlm, Reply, Seen, error, ok, smart_storyboard

T = TypeVar("T")
Client = TestClient[web.Request, web.Application]

STATIC = ROOT / "service" / "web" / "static"
SCREENSHOTS = Path(
    os.environ.get("STORYBOARD_SCREENSHOTS")
    or Path(tempfile.gettempdir()) / "storyboard-screenshots"
)
VIEWPORT = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
WAIT_S = 60
API_KEY = "web-test-key-0123456789"


# --------------------------------------------------------------------------- over HTTP


async def _client(aiohttp_client: Any, local_settings: SettingsFactory) -> Client:
    app = create_app(await prepare(local_settings()), worker=False)
    client: Client = await aiohttp_client(app)
    return client


async def test_page_and_its_files_carry_the_security_headers(
    aiohttp_client: Any, local_settings: SettingsFactory
) -> None:
    client = await _client(aiohttp_client, local_settings)
    for path, media in (
        ("/", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/style.css", "text/css"),
        ("/static/favicon.svg", "image/svg+xml"),
    ):
        response = await client.get(path)
        assert response.status == 200, path
        assert response.content_type == media, path
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        policy = response.headers["Content-Security-Policy"]
        for directive in (
            "default-src 'self'",
            "connect-src 'self'",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ):
            assert directive in policy.split("; "), directive
        assert "unsafe" not in policy
        unchanged = await client.get(path, headers={"If-None-Match": response.headers["ETag"]})
        assert unchanged.status == 304


async def test_only_the_pages_own_files_are_served(
    aiohttp_client: Any, local_settings: SettingsFactory
) -> None:
    client = await _client(aiohttp_client, local_settings)
    for path in ("/static/nope.js", "/static/..%2f__init__.py", "/static/%2e%2e%2fapp.py"):
        response = await client.get(path)
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "not_found"


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style" or "style" in names:
            self.problems.append(f"inline style in <{tag}>")
        self.problems += [f"handler {name} on <{tag}>" for name in names if name.startswith("on")]
        if tag == "script":
            source = dict(attrs).get("src")
            if not source:
                self.problems.append("inline <script>")
            else:
                self.scripts.append(source)


def test_page_has_no_inline_code_and_its_scripts_no_html_sinks() -> None:
    markup = _Markup()
    markup.feed((ROOT / "service" / "web" / "index.html").read_text())
    assert markup.problems == []
    assert markup.scripts == ["/static/app.js"]
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|Function\(")
    for script in STATIC.glob("*.js"):
        code = script.read_text()
        # dom.js names the properties only to refuse them.
        found = [m[0] for m in sinks.finditer(code) if script.name != "dom.js"]
        assert found == [], script.name
        assert "new EventSource" not in code, "EventSource cannot send the Authorization header"


async def test_every_module_the_page_imports_is_served(
    aiohttp_client: Any, local_settings: SettingsFactory
) -> None:
    client = await _client(aiohttp_client, local_settings)
    seen: set[str] = set()
    pending = ["app.js"]
    while pending:
        name = pending.pop()
        seen.add(name)
        response = await client.get(f"/static/{name}")
        assert response.status == 200, name
        imported = re.findall(r'from "\./([\w-]+\.js)"', await response.text())
        pending += [module for module in imported if module not in seen]
    assert seen == {path.name for path in STATIC.glob("*.js")}


# --------------------------------------------------------------------------- the browser


def _options(browser: str, profile: str, downloads: Path) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--lang=en-US",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.set_capability("unhandledPromptBehavior", "ignore")
    return options


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the module, in a fresh profile."""
    found = find_chromium()
    if found is None:  # conftest leaves these tests out first; this is for a direct call
        pytest.skip(INSTALL_HINT)
    binary, driver_path = found
    downloads = tmp_path_factory.mktemp("downloads")
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as profile:
        patch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager fetch a driver
        driver = webdriver.Chrome(
            service=Service(executable_path=driver_path),
            options=_options(binary, profile, downloads),
        )
        try:
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", VIEWPORT)
            driver.execute_cdp_cmd(
                "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
            )
            driver.downloads = downloads  # type: ignore[attr-defined]
            yield driver
        finally:
            driver.quit()


@pytest.fixture
def page(browser: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    """The browser for one test; afterwards its console must hold no script error and no
    content-security-policy violation (failed API calls are logged too, and expected)."""
    browser.get("about:blank")
    _console(browser)
    yield browser
    problems = [
        entry["message"]
        for entry in _console(browser)
        if entry["level"] == "SEVERE" and entry.get("source") != "network"
    ]
    assert problems == []


def _console(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The console entries since the last call (Selenium's get_log has no types)."""
    entries: list[dict[str, Any]] = driver.execute("getLog", {"type": "browser"})["value"]
    return entries


def _wait(driver: webdriver.Chrome, probe: Callable[[webdriver.Chrome], T], what: str) -> T:
    wait = WebDriverWait(driver, WAIT_S, ignored_exceptions=[StaleElementReferenceException])
    try:
        return wait.until(probe)
    except TimeoutException:
        raise AssertionError(f"{what}; the page says:\n{_text(driver, 'main')}") from None


def _text(driver: webdriver.Chrome, selector: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0].text if found else ""


def _shows(selector: str, fragment: str) -> Callable[[webdriver.Chrome], bool]:
    return lambda driver: fragment in _text(driver, selector)


def _more_than(selector: str, count: int) -> Callable[[webdriver.Chrome], bool]:
    return lambda driver: len(_all(driver, selector)) > count


def _all(driver: webdriver.Chrome, selector: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, selector)


def _screenshot(driver: webdriver.Chrome, name: str, top: str | None = None) -> None:
    """Save the viewport, scrolled to the top or to just above element ``top``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.execute_script(
        "const el = arguments[0] && document.querySelector(arguments[0]);"
        "window.scrollTo(0, el ? el.getBoundingClientRect().top + scrollY - 64 : 0)",
        top,
    )
    assert driver.save_screenshot(str(SCREENSHOTS / name))


def _open(driver: webdriver.Chrome, url: str) -> None:
    """Load ``url`` afresh, with nothing kept from an earlier test (language, credential)."""
    origin = re.match(r"https?://[^/]+", url)
    assert origin is not None
    driver.get(origin[0] + "/openapi.json")
    driver.execute_script("sessionStorage.clear(); localStorage.clear()")
    driver.get(url)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "main h1"), "the page never rendered")


def _api(
    base: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Any:
    request = urllib.request.Request(base + path, data=body, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def _storyboard_of(base: str, text: bytes, title: str) -> tuple[str, dict[str, Any]]:
    """Upload and analyze through the API; the job id and its storyboard once complete."""
    headers = {"Content-Type": "text/plain"}
    novel = _api(base, f"/v1/novels?title={title}", text, headers)
    job = _api(base, f"/v1/novels/{novel['novelId']}/analyze", b"")
    deadline = time.monotonic() + WAIT_S
    while _api(base, f"/v1/jobs/{job['jobId']}")["status"] != "completed":
        assert time.monotonic() < deadline, "the job did not complete"
        time.sleep(0.1)
    return job["jobId"], _api(base, f"/v1/jobs/{job['jobId']}/storyboard")


def _chapter(storyboard: dict[str, Any], index: int) -> list[dict[str, Any]]:
    return [scene for scene in storyboard["scenes"] if scene["chapterIndex"] == index]


def _cast(storyboard: dict[str, Any], scenes: list[dict[str, Any]]) -> list[str]:
    """The names the cast sidebar lists: who is in ``scenes`` first, each group in order."""
    present = {i for panel in _panels(scenes) for i in panel["characterIds"]}
    ordered = sorted(storyboard["characters"], key=lambda c: c["id"] not in present)
    return [c["name"] for c in ordered]


def _panels(scenes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [panel for scene in scenes for panel in scene["panels"]]


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """``storyboard serve`` with the offline analyzer; uploads up to 1 MiB."""
    root = tmp_path_factory.mktemp("web-offline")
    env = service_env(
        root / "data", STORYBOARD_ANALYZER="offline", STORYBOARD_MAX_BODY_BYTES=str(1 << 20)
    )
    with running_service("serve", env, root / "serve.log") as service:
        yield service


@pytest.fixture(scope="module")
def alice(offline: ServiceProcess) -> tuple[str, dict[str, Any]]:
    """Alice analyzed once for the reader's tests: its job id and storyboard."""
    return _storyboard_of(offline.url, corpus_file("alice-in-wonderland.txt").read_bytes(), "Alice")


def test_upload_the_alice_file_watch_it_finish_and_read_chapter_one(
    page: webdriver.Chrome, offline: ServiceProcess
) -> None:
    alice_file = corpus_file("alice-in-wonderland.txt")
    _open(page, offline.url + "/")
    page.find_element(By.ID, "file").send_keys(str(alice_file))
    assert page.find_element(By.ID, "title").get_attribute("value") == "alice-in-wonderland"
    assert "alice-in-wonderland.txt" in _text(page, "#file-chosen")
    _screenshot(page, "upload.png")
    page.find_element(By.ID, "upload-submit").click()

    bar = _wait(page, lambda d: d.find_element(By.ID, "job-progress"), "no progress bar")
    _wait(page, lambda d: bar.get_attribute("value") == "100", "the bar never reached 100 %")
    assert "Completed · 100 %" in _text(page, "#job-line")
    assert page.find_element(By.ID, "job-line").get_attribute("aria-live") == "polite"
    page.find_element(By.ID, "job-read").click()

    _wait(page, lambda d: _all(d, ".panel"), "no panels")
    job_id = page.current_url.rsplit("/", 1)[-1]
    storyboard = _api(offline.url, f"/v1/jobs/{job_id}/storyboard")
    assert storyboard["title"] == "alice-in-wonderland"
    first = _chapter(storyboard, 1)
    assert len(_all(page, ".scene")) == len(first)
    assert len(_all(page, ".panel")) == len(_panels(first))
    # Every dialogue line is a balloon under its speaker's name.
    names = {c["id"]: c["name"] for c in storyboard["characters"]} | {
        "narrator": "Narrator",
        "unknown": "? (unknown speaker)",
    }
    lines = [(names[d["speakerId"]], d["text"]) for p in _panels(first) for d in p["dialogue"]]
    balloons = [
        (
            b.find_element(By.CSS_SELECTOR, ".speaker").text,
            b.find_element(By.CSS_SELECTOR, ".speech"),
        )
        for b in _all(page, ".balloon")
    ]
    assert lines
    assert [(name.upper(), text) for name, text in lines] == [
        (name, speech.get_attribute("textContent")) for name, speech in balloons
    ]
    assert [e.get_attribute("textContent") for e in _all(page, ".cast-name")] == _cast(
        storyboard, first
    )
    _screenshot(page, "storyboard.png", top=".scene-location")

    page.find_element(By.ID, "chapter-next").click()
    second = _chapter(storyboard, 2)
    _wait(page, lambda d: len(_all(d, ".scene")) == len(second), "chapter 2 never showed")
    assert len(_all(page, ".panel")) == len(_panels(second))
    assert page.current_url.endswith(f"/read/job/{job_id}/2")


def test_a_character_highlights_their_panels(
    page: webdriver.Chrome, offline: ServiceProcess, alice: tuple[str, dict[str, Any]]
) -> None:
    job_id, storyboard = alice
    _open(page, f"{offline.url}/#/read/job/{job_id}/1")
    rabbit = next(c for c in storyboard["characters"] if c["name"] == "White Rabbit")
    theirs = [
        p["id"] for p in _panels(_chapter(storyboard, 1)) if rabbit["id"] in p["characterIds"]
    ]
    assert theirs
    button = _wait(
        page,
        lambda d: d.find_element(
            By.CSS_SELECTOR, f'.cast-member[data-character-id="{rabbit["id"]}"]'
        ),
        "no cast entry",
    )
    assert "Rabbit" in button.text  # the alias is listed
    button.click()
    highlighted = [e.get_attribute("data-panel-id") for e in _all(page, ".panel.is-highlighted")]
    assert highlighted == theirs
    assert button.get_attribute("aria-pressed") == "true"
    status = page.find_element(By.ID, "reader-status").get_attribute("textContent") or ""
    assert f"in {len(theirs)} of" in status
    button.click()
    assert _all(page, ".panel.is-highlighted") == []
    assert button.get_attribute("aria-pressed") == "false"


def test_the_image_prompt_shows_on_demand_and_copies(
    page: webdriver.Chrome, offline: ServiceProcess, alice: tuple[str, dict[str, Any]]
) -> None:
    job_id, storyboard = alice
    page.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"], "origin": offline.url},
    )
    _open(page, f"{offline.url}/#/read/job/{job_id}/1")
    first = _panels(_chapter(storyboard, 1))[0]
    panel = _wait(page, lambda d: d.find_element(By.ID, f"panel-{first['id']}"), "no panel")
    prompt = panel.find_element(By.CSS_SELECTOR, ".prompt")
    assert not prompt.is_displayed()
    toggle = panel.find_element(By.CSS_SELECTOR, ".prompt-toggle")
    toggle.click()
    assert prompt.is_displayed()
    assert toggle.get_attribute("aria-expanded") == "true"
    assert prompt.find_element(By.CSS_SELECTOR, ".prompt-text").text == first["imagePrompt"]
    prompt.find_element(By.CSS_SELECTOR, ".copy").click()
    _wait(page, lambda d: "Copied" in prompt.text, "the copy was not confirmed")
    copied = page.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], (e) => arguments[0](String(e)))"
    )
    assert copied == first["imagePrompt"]


def test_export_downloads_the_storyboard_json(
    page: webdriver.Chrome, offline: ServiceProcess, alice: tuple[str, dict[str, Any]]
) -> None:
    job_id, storyboard = alice
    downloads: Path = page.downloads  # type: ignore[attr-defined]
    _open(page, f"{offline.url}/#/read/job/{job_id}")
    _wait(page, lambda d: d.find_element(By.ID, "export-json"), "no export button").click()
    target = downloads / "Alice.storyboard.json"
    _wait(page, lambda d: target.exists() and target.stat().st_size > 0, "nothing downloaded")
    assert json.loads(target.read_text()) == storyboard


def _pdf_pages(driver: webdriver.Chrome) -> int:
    options = PrintOptions()
    options.page_width, options.page_height = 21.0, 29.7  # A4, in cm
    pdf = base64.b64decode(driver.print_page(options))
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf))


def test_printing_gives_every_scene_a_page_of_its_own(
    page: webdriver.Chrome, offline: ServiceProcess, alice: tuple[str, dict[str, Any]]
) -> None:
    job_id, storyboard = alice
    _open(page, f"{offline.url}/#/read/job/{job_id}/3")
    _wait(page, lambda d: _all(d, ".panel"), "no panels")
    # Printing takes the whole storyboard, not only the chapter on screen.
    assert _pdf_pages(page) == len(storyboard["scenes"])
    assert len(_all(page, ".scene")) == len(_chapter(storyboard, 3))


def test_an_upload_error_is_shown_in_the_apis_own_words(
    page: webdriver.Chrome, offline: ServiceProcess, tmp_path: Path
) -> None:
    cases = {
        "big.txt": (b"a" * (2 << 20), "payload_too_large: request body is too large"),
        "binary.txt": (b"\x80\x80\x80 not text", "undecodable_text: the upload is not valid"),
        "blank.txt": (b"  \n\n ", "empty_text: the novel's text is empty"),
    }
    _open(page, offline.url + "/")
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        page.find_element(By.ID, "file").send_keys(str(path))
        page.find_element(By.ID, "upload-submit").click()
        _wait(page, _shows("#upload-error", message), f"{name}: no {message}")
        assert page.find_element(By.ID, "upload-error").get_attribute("role") == "alert"
        assert page.current_url.endswith("/")  # still on the form


def _every_page(base: str, path: str) -> list[dict[str, Any]]:
    """Every item of a list endpoint, following ``nextCursor``."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = f"?limit=20&cursor={urllib.parse.quote(cursor)}" if cursor else "?limit=20"
        page = _api(base, path + query)
        items += page["items"]
        cursor = page["nextCursor"]
        if not cursor:
            return items


def test_my_work_lists_novels_and_jobs_newest_first_and_deletes(
    page: webdriver.Chrome, offline: ServiceProcess, alice: tuple[str, dict[str, Any]]
) -> None:
    headers = {"Content-Type": "text/plain"}
    for number in range(21):  # more than one page of 20
        _api(offline.url, f"/v1/novels?title=Tale%20{number}", b"Once upon a time.", headers)
    novels = _every_page(offline.url, "/v1/novels")
    jobs = _every_page(offline.url, "/v1/jobs")
    _open(page, offline.url + "/#/work")
    _wait(page, lambda d: len(_all(d, "#novels-list .work-title")) == 20, "no first page")
    job_ids = [e.get_attribute("data-job-id") for e in _all(page, "#jobs-list .work-item")]
    assert job_ids == [job["jobId"] for job in jobs][:20]
    more = page.find_element(By.ID, "novels-more")
    while more.is_displayed():
        shown = len(_all(page, "#novels-list .work-title"))
        more.click()
        _wait(page, _more_than("#novels-list .work-title", shown), "no more novels")
    titles = [e.text for e in _all(page, "#novels-list .work-title")]
    assert titles == [novel["title"] for novel in novels]
    assert titles[0] == "Tale 20"

    newest = novels[0]["novelId"]
    item = page.find_element(By.CSS_SELECTOR, f'#novels-list [data-novel-id="{newest}"]')
    item.find_element(By.CSS_SELECTOR, ".button.danger").click()
    page.switch_to.alert.accept()  # "Delete “Tale 20”…? This cannot be undone."
    _wait(page, _shows("#work", "Deleted “Tale 20”."), "no word of the deletion")
    assert _all(page, f'#novels-list [data-novel-id="{newest}"]') == []
    with pytest.raises(urllib.error.HTTPError) as gone:
        _api(offline.url, f"/v1/novels/{newest}")
    assert gone.value.code == 404


def test_the_page_speaks_chinese_too(page: webdriver.Chrome, offline: ServiceProcess) -> None:
    _open(page, offline.url + "/")
    assert page.execute_script("return document.documentElement.lang") == "en"
    page.find_element(By.ID, "lang-toggle").click()
    _wait(page, lambda d: _text(d, "#upload-heading") == "把小说变成分镜", "no Chinese heading")
    assert page.execute_script("return document.documentElement.lang") == "zh-Hans"
    assert page.find_element(By.CSS_SELECTOR, 'label[for="title"]').text == "标题"
    page.refresh()
    _wait(page, lambda d: _text(d, "#upload-heading") == "把小说变成分镜", "choice forgotten")
    page.find_element(By.ID, "lang-toggle").click()
    _wait(page, lambda d: _text(d, "#upload-heading").startswith("Turn"), "no English again")


_CONTRAST_JS = """
const parse = (c) => {
  const m = /rgba?\\(([^)]+)\\)/.exec(c);
  if (!m) return null;
  const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
  return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
};
const over = (top, under) => ({
  r: top.r * top.a + under.r * (1 - top.a), g: top.g * top.a + under.g * (1 - top.a),
  b: top.b * top.a + under.b * (1 - top.a), a: 1,
});
const background = (el) => {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
  }
  const white = { r: 255, g: 255, b: 255, a: 1 };
  return layers.reverse().reduce((under, top) => over(top, under), white);
};
const luminance = ({ r, g, b }) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const failures = [];
for (const el of document.querySelectorAll("body *")) {
  const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
  if (!own || !el.getClientRects().length || el.closest(":disabled, option, [hidden]")) continue;
  const style = getComputedStyle(el);
  if (style.visibility !== "visible") continue;
  const bg = background(el);
  const fg = over(parse(style.color), bg);
  const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
  const ratio = (hi + 0.05) / (lo + 0.05);
  const text = el.textContent.trim().slice(0, 30);
  if (ratio < 4.5) failures.push(`${el.tagName}.${el.className} ${ratio.toFixed(2)}: ${text}`);
}
return failures;
"""


def test_text_has_enough_contrast_and_the_cast_works_from_the_keyboard(
    page: webdriver.Chrome, offline: ServiceProcess, alice: tuple[str, dict[str, Any]]
) -> None:
    job_id, storyboard = alice
    _open(page, offline.url + "/")
    assert page.execute_script(_CONTRAST_JS) == []
    _open(page, f"{offline.url}/#/job/{job_id}")
    _wait(page, lambda d: "Completed" in _text(d, "#job-line"), "no job state")
    assert page.execute_script(_CONTRAST_JS) == []
    _open(page, f"{offline.url}/#/read/job/{job_id}/1")
    _wait(page, lambda d: _all(d, ".cast-member"), "no cast")
    # The last control before the cast, then one Tab: the first cast entry has the focus.
    page.execute_script("[...document.querySelectorAll('.scenes .prompt-toggle')].pop().focus()")
    page.switch_to.active_element.send_keys(Keys.TAB)
    focused = page.switch_to.active_element
    first = _cast(storyboard, _chapter(storyboard, 1))[0]
    assert focused.find_element(By.CSS_SELECTOR, ".cast-name").text == first
    outline = page.execute_script(
        "const s = getComputedStyle(document.activeElement);return [s.outlineStyle, s.outlineWidth]"
    )
    assert outline[0] != "none"
    assert float(outline[1].removesuffix("px")) >= 2
    focused.send_keys(Keys.ENTER)
    assert focused.get_attribute("aria-pressed") == "true"
    assert _all(page, ".panel.is-highlighted")
    assert page.execute_script(_CONTRAST_JS) == []  # the faded panels too
    focused.send_keys(Keys.SPACE)
    assert focused.get_attribute("aria-pressed") == "false"


@pytest.fixture(scope="module")
def sleeping(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """``storyboard serve`` whose analyzer sleeps ten minutes: its jobs stay running."""
    root = tmp_path_factory.mktemp("web-sleeping")
    env = service_env(root / "data", STORYBOARD_ANALYZER="sleep", STORYBOARD_SLEEP_ANALYZER_S="600")
    with running_service("serve", env, root / "serve.log") as service:
        yield service


def _paste_and_start(driver: webdriver.Chrome, title: str, text: str) -> None:
    driver.find_element(By.ID, "title").send_keys(title)
    # send_keys types character by character; the value is set as a user's paste would.
    area = driver.find_element(By.ID, "text")
    driver.execute_script("arguments[0].value = arguments[1]", area, text)
    driver.find_element(By.ID, "upload-submit").click()


def test_a_running_job_follows_live_and_can_be_cancelled(
    page: webdriver.Chrome, sleeping: ServiceProcess
) -> None:
    _open(page, sleeping.url + "/")
    _paste_and_start(page, "A long night", "It was a long night. " * 200)
    _wait(page, lambda d: _text(d, "#job-line").endswith("50 % · analyzer ready"), "no progress")
    assert page.find_element(By.ID, "job-progress").get_attribute("value") == "50"
    # The bar moved through the event stream: the job itself was read once, on arrival.
    job_id = page.current_url.rsplit("/", 1)[-1]
    reads = page.execute_script(
        "return performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname)"
    )
    assert reads.count(f"/v1/jobs/{job_id}") == 1
    assert "A long night" in _text(page, "#job-novel")
    _screenshot(page, "job-running.png")
    page.find_element(By.ID, "job-cancel").click()
    _wait(page, lambda d: "The job was cancelled." in _text(d, "#job-outcome"), "no cancel")
    assert _all(page, "#job-cancel") == []
    assert "Cancelled" in _text(page, "#job-history")
    streams = page.execute_script(
        "return performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname)"
    )
    assert streams.count(f"/v1/jobs/{job_id}/events") == 1  # one stream, now ended
    assert _api(sleeping.url, f"/v1/jobs/{job_id}")["status"] == "cancelled"


@contextmanager
def _fake_llm_in_a_thread() -> Iterator[FakeLlm]:
    """The fake model server on a loop of its own: the browser calls block this thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = FakeLlm()
    runner = web.AppRunner(fake.app())

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    host, port = runner.addresses[0][:2]
    fake.base_url = f"http://{host}:{port}/v1"
    try:
        yield fake
    finally:
        fake.release()
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, FakeLlm]]:
    """``storyboard serve`` with the model analyzer on the fake model: one try per call,
    two attempts per job two seconds apart."""
    root = tmp_path_factory.mktemp("web-model")
    with _fake_llm_in_a_thread() as fake:
        env = service_env(
            root / "data",
            STORYBOARD_ANALYZER="llm",
            STORYBOARD_LLM_BASE_URL=fake.base_url,
            STORYBOARD_LLM_API_KEY="test-key",
            STORYBOARD_LLM_MAX_RETRIES="0",
            STORYBOARD_RETRY_BASE_S="2",
            STORYBOARD_MAX_ATTEMPTS="2",
            STORYBOARD_RECEIVE_WAIT_S="0.2",
        )
        with running_service("serve", env, root / "serve.log") as service:
            yield service, fake


XSS_TITLE = '<script>window.__xss = "title"</script>"><img src=x onerror="window.__xss=1">'
XSS_NAME = '"><img src=x onerror="window.__xss=2"><script>window.__xss=3</script>'
XSS_LINE = '<script>window.__xss = "line"</script><img src=x onerror="window.__xss=4">'


def _hostile(seen: Seen) -> Reply:
    if seen.kind == "cast":
        cast = [{"name": XSS_NAME, "aliases": ["<b>bold</b>"], "appearance": XSS_LINE}]
        return ok({"characters": cast, "summary": XSS_LINE})
    board = smart_storyboard(seen.text, seen.cast_names)
    for scene in board["scenes"]:
        scene["location"] = XSS_LINE
        for panel in scene["panels"]:
            panel["characters"] = [XSS_NAME]
            panel["dialogue"] = [{"speaker": XSS_NAME, "text": XSS_LINE}]
            panel["narration"] = XSS_LINE
    return ok(board)


def test_hostile_text_in_titles_names_and_dialogue_renders_as_text(
    page: webdriver.Chrome, model: tuple[ServiceProcess, FakeLlm]
) -> None:
    service, fake = model
    fake.rules = [_hostile]
    _open(page, service.url + "/")
    text = f'Chapter 1\n\n{XSS_LINE} said the stranger. "{XSS_LINE}," he said once more.\n' * 3
    _paste_and_start(page, XSS_TITLE, text)
    _wait(page, lambda d: d.find_element(By.ID, "job-read"), "the job did not complete").click()
    _wait(page, lambda d: _all(d, ".panel"), "no panels")
    assert page.find_element(By.ID, "reader-title").text == XSS_TITLE
    assert page.title.startswith(XSS_TITLE)
    assert _text(page, ".cast-name") == XSS_NAME
    balloon = page.find_element(By.CSS_SELECTOR, ".balloon")
    assert (
        balloon.find_element(By.CSS_SELECTOR, ".speaker").get_attribute("textContent") == XSS_NAME
    )
    assert balloon.find_element(By.CSS_SELECTOR, ".speech").text == XSS_LINE
    assert _text(page, ".scene-location").endswith(XSS_LINE)
    # Nothing the text held became an element, and none of its scripts ran.
    assert (
        page.execute_script("return document.querySelectorAll('img, main script, b').length") == 0
    )
    assert page.execute_script("return typeof window.__xss") == "undefined"


def test_retries_and_the_final_failure_are_shown(
    page: webdriver.Chrome, model: tuple[ServiceProcess, FakeLlm]
) -> None:
    service, fake = model
    fake.rules = [lambda seen: error(503, "overloaded", "the model is overloaded")]
    _open(page, service.url + "/")
    _paste_and_start(page, "Doomed", "Chapter 1\n\nA story that will never be told.\n")
    alert = _wait(
        page, lambda d: d.find_element(By.CSS_SELECTOR, "#job-outcome .error"), "no failure shown"
    )
    job_id = page.current_url.rsplit("/", 1)[-1]
    job = _api(service.url, f"/v1/jobs/{job_id}")
    assert job["status"] == "failed"
    assert alert.text == f"The job failed: {job['error']['code']}: {job['error']['message']}"
    history = _text(page, "#job-history")
    assert "Retrying" in history
    assert "next attempt at" in history
    assert "Failed" in history
    assert page.find_element(By.ID, "job-progress").get_attribute("data-status") == "failed"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """``storyboard serve`` with API-key authentication on."""
    root = tmp_path_factory.mktemp("web-secured")
    keys = json.dumps({hashlib.sha256(API_KEY.encode()).hexdigest(): "reader"})
    env = service_env(
        root / "data",
        STORYBOARD_ANALYZER="sleep",
        STORYBOARD_SLEEP_ANALYZER_S="0",
        STORYBOARD_AUTH_API_KEYS=keys,
    )
    with running_service("serve", env, root / "serve.log") as service:
        yield service


def _sign_in(driver: webdriver.Chrome, key: str) -> WebElement:
    dialog = _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "dialog[open]"), "no dialog")
    field = dialog.find_element(By.ID, "auth-token")
    assert dialog.find_element(By.CSS_SELECTOR, 'label[for="auth-token"]').text
    field.send_keys(key)
    field.send_keys(Keys.ENTER)
    return dialog


def _stored_key(driver: webdriver.Chrome) -> str | None:
    key: str | None = driver.execute_script("return sessionStorage.getItem('storyboard.token')")
    return key


def test_with_auth_on_the_page_asks_once_and_keeps_the_key_out_of_urls(
    page: webdriver.Chrome, secured: ServiceProcess
) -> None:
    _open(page, secured.url + "/")
    # The start page's own calls answer 401: a wrong key is refused, the right one kept.
    _sign_in(page, "not-the-key")
    _wait(page, lambda d: "refused" in _text(d, "dialog[open]"), "the wrong key was not refused")
    _sign_in(page, API_KEY)
    _wait(page, lambda d: not _all(d, "dialog[open]"), "the dialog stayed")
    # The dialog's close event, which hands the key over, comes a moment after it closes.
    _wait(page, lambda d: _stored_key(d) == API_KEY, "the key was not kept")
    _paste_and_start(page, "Signed", "A short tale, told by someone signed in.")
    _wait(page, lambda d: "Completed" in _text(d, "#job-line"), "the job did not complete")
    assert _all(page, "dialog[open]") == []  # asked once only
    page.refresh()
    _wait(page, lambda d: "Completed" in _text(d, "#job-line"), "the key was not kept")
    assert _all(page, "dialog[open]") == []
    urls = page.execute_script(
        "return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]"
    )
    assert urls
    assert [url for url in urls if API_KEY in url] == []
    page.find_element(By.ID, "sign-out").click()
    assert _stored_key(page) is None
