"""The web console in a real browser: Debian's headless Chromium driven by Selenium, against the
session's running `ragkb serve` with the real reader. Screenshots go to
$RAGKB_CONSOLE_SCREENSHOTS (docs/console/ when refreshing the README's pictures).

Named to sort right after test_e2e.py, where the shared service starts anyway: on the Redis
broker the service's worker consumes every shard queue, so an in-process test that runs after
it and waits for its own jobs can see them taken by the service's worker."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.docgen import make_pdf
from tests.e2e_service import OPERATOR_TENANT, Service, ragkb

pytestmark = [pytest.mark.e2e, pytest.mark.reader]

FACT = "4471"
XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[WebDriver]:
    """One headless Chromium for the module (Debian's chromium and chromium-driver)."""
    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary, "apt-get install chromium (scripts/bootstrap.sh)"
    assert driver_path, "apt-get install chromium-driver (scripts/bootstrap.sh)"
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--disable-gpu"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(options=options, service=ChromeService(executable_path=driver_path))
    # Headless Chromium saves downloads only when told where.
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("RAGKB_CONSOLE_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("console-shots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def admin_key(service: Service) -> str:
    return service.new_tenant(
        "console", "--scope", "admin", "--scope", "read", "--scope", "ingest", "--scope", "query"
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three files, one of them corrupt; the fact is on page 2 of the PDF."""
    root = tmp_path_factory.mktemp("upload") / "kb"
    (root / "offices").mkdir(parents=True)
    make_pdf(
        root / "offices" / "lisbon.pdf",
        [
            ("Lisbon office", ["The Lisbon office opened in 2019 on Rua Augusta."]),
            ("Access", [f"The door code of the Lisbon office is {FACT}.", "Change it yearly."]),
        ],
    )
    (root / "handbook.md").write_text("# Handbook\n\n## Travel\n\nBook trains under 500 km.\n")
    (root / "broken.pdf").write_bytes(b"this is not a PDF at all")
    return root


def wait(driver: WebDriver, timeout: float = 30) -> WebDriverWait[WebDriver]:
    # The console redraws lists as data arrives: an element found a moment ago may be replaced.
    return WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException])


def visible(driver: WebDriver, css: str, timeout: float = 30) -> WebElement:
    found: WebElement = wait(driver, timeout).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, css))
    )
    return found


def job_finished(driver: WebDriver, timeout: float) -> None:
    """Wait for the followed job to finish (read in one script call: the progress block is
    redrawn every second, so a found element may be gone by the time it is read)."""
    status = "return (document.getElementById('job-status') || {dataset: {}}).dataset.status"
    wait(driver, timeout).until(lambda d: str(d.execute_script(status)).startswith("completed"))


def no_csp_violations(driver: WebDriver) -> None:
    errors = [e["message"] for e in driver.get_log("browser") if "Content Security" in e["message"]]
    assert errors == []


def sign_in(driver: WebDriver, url: str, key: str) -> None:
    driver.get(f"{url}/console")
    visible(driver, "#api-key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    wait(driver).until(ec.url_contains("/console/documents"))


def test_console_pages_carry_a_strict_csp(service: Service) -> None:
    for path in ("/console", "/console/documents", "/console/static/console.js"):
        response = httpx.get(service.url + path)
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        assert "script-src 'self';" in csp
        assert "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp


def test_sign_in_upload_a_folder_and_read_the_corrupt_files_reason(
    browser: WebDriver, service: Service, admin_key: str, folder: Path, shots: Path
) -> None:
    browser.get(f"{service.url}/console")
    browser.save_screenshot(str(shots / "signin.png"))
    sign_in(browser, service.url, admin_key)
    visible(browser, "#upload-folder").send_keys(str(folder))
    browser.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    job_finished(browser, 300)
    status = browser.find_element(By.ID, "job-status").text
    assert "3/3 files" in status
    assert "1 failed" in status
    failed = browser.find_elements(By.CSS_SELECTOR, "#failed-files li")
    assert [li.get_attribute("data-path") for li in failed] == ["kb/broken.pdf"]
    assert failed[0].find_element(By.CSS_SELECTOR, ".reason").text.strip()
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#documents tbody tr")) == 2)
    browser.execute_script("document.getElementById('jobs-h').scrollIntoView()")
    browser.save_screenshot(str(shots / "documents.png"))
    no_csp_violations(browser)


def test_a_documents_chunks_and_text(browser: WebDriver, service: Service, shots: Path) -> None:
    browser.get(f"{service.url}/console/documents")
    visible(browser, "#documents tbody a")
    link = next(
        a for a in browser.find_elements(By.CSS_SELECTOR, "#documents tbody a")
        if a.text == "kb/offices/lisbon.pdf"
    )  # fmt: skip
    link.click()
    visible(browser, "#chunks li")
    heads = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#chunks .chunk-head")]
    assert any("page 2" in h for h in heads), heads
    wait(browser).until(lambda d: FACT in d.find_element(By.ID, "doc-text").text)
    browser.save_screenshot(str(shots / "document.png"))
    no_csp_violations(browser)


def test_the_original_file_downloads_from_the_document_page(
    browser: WebDriver, service: Service, folder: Path, downloads: Path
) -> None:
    browser.get(f"{service.url}/console/documents")
    wait(browser).until(
        lambda d: d.execute_script(
            "const a = [...document.querySelectorAll('#documents tbody a')]"
            ".find((a) => a.textContent === 'kb/offices/lisbon.pdf'); if (a) a.click(); return !!a"
        )
    )
    visible(browser, "#chunks li")
    browser.find_element(By.ID, "doc-download").click()
    saved = downloads / "lisbon.pdf"
    wait(browser).until(lambda _: saved.is_file() and saved.stat().st_size > 0)
    assert saved.read_bytes() == (folder / "offices" / "lisbon.pdf").read_bytes()
    no_csp_violations(browser)


def _listed(driver: WebDriver) -> list[str] | None:
    """The paths listed, or None while the list is being redrawn."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#documents tbody tr')].map("
        "(r) => r.classList.contains('empty') ? '' : r.querySelector('a').textContent)"
    )
    return None if rows is None else [str(r) for r in rows]


def test_the_document_list_filters_by_type_folder_text_and_time(
    browser: WebDriver, service: Service, shots: Path
) -> None:
    browser.get(f"{service.url}/console/documents")
    both = ["kb/handbook.md", "kb/offices/lisbon.pdf"]
    wait(browser).until(lambda d: sorted(_listed(d) or []) == both)
    cases = [
        ({"filter-type": "pdf"}, ["kb/offices/lisbon.pdf"]),
        ({"filter-prefix": "kb/offices"}, ["kb/offices/lisbon.pdf"]),
        ({"filter-contains": "handb"}, ["kb/handbook.md"]),
        ({"filter-since": "2999-01-01T00:00"}, [""]),
        ({"filter-since": "2000-01-01T00:00", "filter-type": "md"}, ["kb/handbook.md"]),
    ]
    for fields, expected in cases:
        browser.find_element(By.ID, "filter-clear").click()
        for field, value in fields.items():
            # Set as the page's own inputs would hold them (datetime-local typing is locale-bound).
            browser.execute_script(
                "document.getElementById(arguments[0]).value = arguments[1]", field, value
            )
        browser.find_element(By.CSS_SELECTOR, "#doc-filter button[type=submit]").click()
        wait(browser).until(lambda d, want=expected: _listed(d) == want, str(fields))
    browser.execute_script("document.getElementById('docs-h').scrollIntoView()")
    browser.save_screenshot(str(shots / "documents-filtered.png"))


def test_ask_then_open_the_cited_span(browser: WebDriver, service: Service, shots: Path) -> None:
    browser.get(f"{service.url}/console/ask")
    visible(browser, "#question").send_keys("What is the door code of the Lisbon office?")
    browser.find_element(By.CSS_SELECTOR, "#ask-form button[type=submit]").click()
    cite = visible(browser, "#conversation a.cite", timeout=240)
    assert FACT in browser.find_element(By.CSS_SELECTOR, "#conversation .answer").text
    cite.click()
    mark = visible(browser, "#source-text mark#quote")
    assert mark.text.strip()
    where = browser.find_element(By.ID, "source-where").text
    assert "kb/offices/lisbon.pdf" in where
    assert "page 2" in where
    assert FACT in browser.find_element(By.ID, "source-text").text
    browser.save_screenshot(str(shots / "ask.png"))
    no_csp_violations(browser)


def test_search_shows_scores_and_timings(browser: WebDriver, service: Service, shots: Path) -> None:
    browser.get(f"{service.url}/console/search")
    visible(browser, "#search-query").send_keys("door code Lisbon")
    browser.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
    first = visible(browser, "#hits li")
    assert "fused" in first.text
    assert "ms" in browser.find_element(By.ID, "search-timings").text
    browser.save_screenshot(str(shots / "search.png"))


def test_a_hostile_document_renders_as_inert_text(
    browser: WebDriver, service: Service, admin_key: str, shots: Path
) -> None:
    # No double quote in the name: multipart clients percent-encode it.
    name = "x<img src=x onerror=window.__xss=3>.md"
    body = f'# {XSS}\n\n{XSS} [click](javascript:window.__xss=4) <a href="javascript:1">a</a>\n'
    response = httpx.post(
        f"{service.url}/v1/ingest/jobs",
        headers={"Authorization": f"Bearer {admin_key}"},
        files=[("files", (name, body.encode()))],
        timeout=60,
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    browser.get(f"{service.url}/console/documents")
    visible(browser, f"#jobs button[aria-label='Show job {job_id}']").click()
    job_finished(browser, 120)
    # Read in one script call: the list is redrawn when the job finishes.
    find = (
        "const a = [...document.querySelectorAll('#documents a')]"
        ".find((a) => a.textContent.includes('onerror')); return a ? [a.textContent, a.href] : null"
    )
    text, href = wait(browser).until(lambda d: d.execute_script(find))
    assert text == name
    browser.get(href)
    wait(browser).until(lambda d: "<script>" in d.find_element(By.ID, "doc-text").text)
    for _ in ("list", "page"):
        with pytest.raises(NoAlertPresentException):
            _ = browser.switch_to.alert.text
        assert browser.execute_script("return window.__xss === undefined") is True
        injected = "main script, main img, main a[href^='javascript']"
        assert browser.execute_script(f'return document.querySelectorAll("{injected}").length') == 0
        browser.get(f"{service.url}/console/documents")
        visible(browser, "#documents tbody a")
    assert "<script>" in browser.find_element(By.ID, "documents").text


def test_revoking_the_key_sends_the_console_back_to_sign_in(
    browser: WebDriver, service: Service, shots: Path
) -> None:
    browser.get(f"{service.url}/console/admin")
    visible(browser, "#key-name").send_keys("second")
    browser.execute_script("document.getElementById('key-expires').value = '2999-12-31T12:00'")
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    issued = visible(browser, "#new-key").text
    assert "shown once" in issued
    assert "expires" in issued
    assert "2999" in browser.find_element(By.CSS_SELECTOR, "#keys tbody").text
    # Limits beside usage: the two documents of the folder upload and the hostile one.
    used = visible(browser, "#limits tr[data-limit='max_documents'] td:nth-child(3)")
    assert used.text == "3"
    # The audit log filtered by action.
    Select(browser.find_element(By.ID, "audit-action")).select_by_visible_text("key.create")
    browser.find_element(By.CSS_SELECTOR, "#audit-filter button").click()
    wait(browser).until(
        lambda d: (
            {r.text for r in d.find_elements(By.CSS_SELECTOR, "#audit tbody td:nth-child(2)")}
            == {"key.create"}
        )
    )
    browser.save_screenshot(str(shots / "admin.png"))
    # The System page: every dependency's state, the active index.
    browser.get(f"{service.url}/console/system")
    status = visible(browser, "#system-status")
    wait(browser).until(lambda _: status.get_attribute("data-status"))
    states = {
        r.get_attribute("data-check"): r.find_element(By.CSS_SELECTOR, ".state").text
        for r in browser.find_elements(By.CSS_SELECTOR, "#health tbody tr")
    }
    assert set(states) == {"database", "vector_store", "broker", "reader"}
    assert states["database"] == states["vector_store"] == "ok"
    assert "Embedding model" in browser.find_element(By.ID, "active-index").text
    assert "No reindex running" in browser.find_element(By.ID, "reindex").text
    assert not browser.find_element(By.ID, "tenants-card").is_displayed()  # not the operator
    # Revoke the key this console is signed in with: the next call is refused.
    browser.get(f"{service.url}/console/admin")
    own = visible(browser, "#keys tr button[aria-label='Revoke key default']")
    own.click()
    browser.switch_to.alert.accept()
    browser.get(f"{service.url}/console/documents")
    wait(browser).until(ec.url_to_be(f"{service.url}/console"))
    reason = visible(browser, "#signin-reason").text
    assert "revoked" in reason
    assert browser.execute_script("return sessionStorage.getItem('ragkb.key')") is None


def test_an_operator_key_sees_system_health_and_the_tenants(
    browser: WebDriver, service: Service, shots: Path
) -> None:
    ragkb(service.env, "tenant", "create", OPERATOR_TENANT)
    key = ragkb(service.env, "key", "create", "--tenant", OPERATOR_TENANT, "--scope", "admin",
                "--scope", "read").splitlines()[-1]  # fmt: skip
    sign_in(browser, service.url, key)
    browser.get(f"{service.url}/console/system")
    visible(browser, "#tenants tbody tr[data-tenant='acme']")
    rows = browser.find_elements(By.CSS_SELECTOR, "#health tbody tr")
    assert {r.get_attribute("data-check") for r in rows} == {
        "database",
        "vector_store",
        "broker",
        "reader",
    }
    # The operator sees what answered.
    assert all(r.find_elements(By.CSS_SELECTOR, "td")[2].text for r in rows)
    assert "queued" in browser.find_element(By.ID, "queue").text
    browser.save_screenshot(str(shots / "system.png"))
    no_csp_violations(browser)


def test_an_expired_key_returns_to_sign_in_with_the_reason(
    browser: WebDriver, service: Service
) -> None:
    admin = service.new_tenant("console-expiry", "--scope", "admin", "--scope", "read")
    soon = datetime.now(UTC) + timedelta(seconds=6)
    issued = httpx.post(
        f"{service.url}/v1/admin/keys",
        headers={"Authorization": f"Bearer {admin}"},
        json={"name": "brief", "scopes": ["read"], "expires_at": soon.isoformat()},
    )
    assert issued.status_code == 201, issued.text
    sign_in(browser, service.url, issued.json()["key"])
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.5)
    browser.get(f"{service.url}/console/documents")
    wait(browser).until(ec.url_to_be(f"{service.url}/console"))
    assert "expired" in visible(browser, "#signin-reason").text


def test_narrow_window_keeps_the_pages_inside_the_viewport(
    browser: WebDriver, service: Service
) -> None:
    browser.set_window_size(400, 800)
    overflow = "return document.documentElement.scrollWidth - window.innerWidth"
    try:
        browser.get(f"{service.url}/console")
        visible(browser, "#api-key")
        assert browser.execute_script(overflow) <= 0
        sign_in(browser, service.url, service.new_tenant("console-narrow"))
        for page in ("documents", "ask", "search"):
            browser.get(f"{service.url}/console/{page}")
            visible(browser, "nav a")
            assert browser.execute_script(overflow) <= 0, page
    finally:
        browser.set_window_size(1280, 900)


def test_quota_and_rate_limit_refusals_say_why_and_when(
    browser: WebDriver, service: Service, tmp_path: Path
) -> None:
    name = f"console-quota-{uuid.uuid4().hex[:8]}"
    ragkb(service.env, "tenant", "create", name)
    ragkb(service.env, "tenant", "limits", name, "--max-documents", "1",
          "--queries-per-minute", "1")  # fmt: skip
    key = ragkb(service.env, "key", "create", "--tenant", name).splitlines()[-1]
    sign_in(browser, service.url, key)
    files = [tmp_path / "one.md", tmp_path / "two.md"]
    for path in files:
        path.write_text("# A note\n\nSome text.\n")
    visible(browser, "#upload-files").send_keys("\n".join(str(p) for p in files))
    browser.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    wait(browser).until(lambda d: "quota" in d.find_element(By.ID, "notice").text)
    assert "413" not in browser.find_element(By.ID, "notice").text  # the reason, not a code
    # Spend the query bucket's burst (1 a minute refills it), then search in the console.
    for _ in range(40):
        spent = httpx.post(
            f"{service.url}/v1/search", json={}, headers={"Authorization": f"Bearer {key}"}
        )
        if spent.status_code == 429:
            break
    assert spent.status_code == 429
    browser.get(f"{service.url}/console/search")
    visible(browser, "#search-query").send_keys("note")
    browser.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
    wait(browser).until(lambda d: "retry in" in d.find_element(By.ID, "notice").text)
    assert "Too many requests" in browser.find_element(By.ID, "notice").text


def test_files_dropped_on_the_page_are_uploaded(browser: WebDriver, service: Service) -> None:
    sign_in(browser, service.url, service.new_tenant("console-drop"))
    visible(browser, "#drop-zone")
    browser.execute_script(
        """const data = new DataTransfer();
        data.items.add(new File(["# Dropped\\n\\nA dropped note.\\n"], "dropped.md"));
        const zone = document.getElementById("drop-zone");
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));"""
    )
    wait(browser).until(lambda d: "1 file" in d.find_element(By.ID, "dropped").text)
    browser.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    job_finished(browser, 120)
    wait(browser).until(
        lambda d: (
            [a.text for a in d.find_elements(By.CSS_SELECTOR, "#documents tbody a")]
            == ["dropped.md"]
        )
    )
