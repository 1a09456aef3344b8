"""The editors' web app in a real headless Chromium (Selenium, the system's chromium and chromedriver).

Runs wherever `chromium` and `chromedriver` are found (Debian: apt-get install chromium chromium-driver), and is
skipped with a plain message elsewhere; with BROWSER_TESTS=required (set by .ci/run) a missing browser fails.
A screenshot of each page is saved under SCREENSHOT_DIR when set, else under the test's temporary folder,
and its path printed.
"""

import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from personalize.accounts import create_or_get_editor
from personalize.models import Pair, PersonalModel, TrainingJob
from personalize.pairs import upload_pair
from tests.photos import encode, pair_bytes, photo, warm_and_bright

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "a-long-password-123"
REQUIRED = os.environ.get("BROWSER_TESTS") == "required"


def find_chromium() -> tuple[str | None, str | None]:
    browser = next(
        (shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None
    )
    return browser, shutil.which("chromedriver")


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\n[browser] screenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, chromedriver = find_chromium()
    if not (chromium and chromedriver):
        message = (
            "browser tests need chromium and chromedriver on PATH (apt-get install chromium chromium-driver)"
        )
        if REQUIRED:
            pytest.fail(f"BROWSER_TESTS=required but {message}")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            # A page's second download would otherwise wait for a permission nobody can give headless.
            "profile.default_content_setting_values.automatic_downloads": 1,
        },
    )
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.downloads = downloads
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, live_server, screenshots, settings):
    """The browser, signed out, with helpers bound to this test's live server."""
    browser.delete_all_cookies()
    browser.set_window_size(1280, 900)
    return Page(browser, live_server.url, screenshots)


class Page:
    def __init__(self, driver, base_url: str, screenshots: Path):
        self.driver = driver
        self.base_url = base_url
        self.screenshots = screenshots

    def open(self, path: str):
        self.driver.get(self.base_url + path)

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait(self, predicate, timeout: float = 30, message: str = "the page"):
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
            WebDriverException,
        )
        from selenium.webdriver.support.ui import WebDriverWait

        # a predicate may read the page while it is being replaced (a form posted, a redirect): an element
        # found on the old page is then stale, which means "not yet", not a failure
        # (Chromium sometimes reports that staleness as a plain WebDriverException about the node)
        ignored = (NoSuchElementException, StaleElementReferenceException)

        def ready(_):
            try:
                return predicate()
            except WebDriverException as e:
                if "does not belong to the document" in str(e):
                    return False
                raise

        return WebDriverWait(self.driver, timeout, poll_frequency=0.2, ignored_exceptions=ignored).until(
            ready, message=f"timed out waiting for {message}"
        )

    def text(self) -> str:
        return self.find("body").text

    def shot(self, name: str) -> Path:
        # The whole page, not only the window: make the window as tall as the document first.
        width = self.driver.get_window_size()["width"]
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(width, min(max(height, 600), 4000))
        self.driver.execute_script("window.scrollTo(0, 0)")
        path = self.screenshots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def sign_in(self, username: str, password: str = PASSWORD):
        self.open("/")
        self.wait(lambda: "/signin" in self.driver.current_url, message="the sign-in page")
        self.find("#id_username").send_keys(username)
        self.find("#id_password").send_keys(password)
        self.find("#signin-form button[type=submit]").click()

    def images_loaded(self, css: str) -> bool:
        return self.driver.execute_script(
            "const images = [...document.querySelectorAll(arguments[0])];"
            "return images.length > 0 && images.every((i) => i.complete && i.naturalWidth > 0);",
            css,
        )


def editor(username: str):
    user, _ = create_or_get_editor(username, password=PASSWORD)
    return user


def add_pairs(owner, count: int, start: int = 0) -> None:
    for i in range(count):
        before, after = pair_bytes(start + i)
        upload_pair(
            owner,
            SimpleUploadedFile("b.jpg", before),
            SimpleUploadedFile("a.jpg", after),
            name=f"p{start + i}",
        )


# --- tests -------------------------------------------------------------------------------------------------


def test_sign_in_empty_states_and_phone_width(page, settings):
    settings.MIN_PAIRS_FOR_TRAINING = 10
    editor("erin")
    page.sign_in("erin", "wrong password")
    page.wait(lambda: "correct username and password" in page.text(), message="the refusal in words")
    page.shot("signin-refused")
    page.find("#id_username").clear()
    page.sign_in("erin")
    page.wait(lambda: page.driver.current_url.endswith("/pairs/"), message="the pairs page")
    assert "No pairs yet." in page.text() and "at least 10" in page.text()
    page.shot("pairs-empty")
    for path, words, name in [
        ("/training/", "Upload at least 10 pairs to train.", "training-empty"),
        ("/models/", "No models yet.", "models-empty"),
        ("/results/", "No model to show yet.", "results-empty"),
    ]:
        page.open(path)
        assert words in page.text()
        if path == "/training/":  # too few pairs: the start button is there but cannot be pressed
            assert page.find("#start-form button[type=submit]").get_attribute("disabled") is not None
        page.shot(name)

    # Phone width: nothing wider than the screen, the navigation still reachable.
    page.driver.set_window_size(390, 844)
    page.open("/pairs/")
    overflow = page.driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    assert page.find("nav a[href='/training/']").is_displayed()
    page.shot("pairs-phone")

    # Keyboard: the skip link comes first, then the navigation.
    from selenium.webdriver.common.keys import Keys

    page.driver.set_window_size(1280, 900)
    page.open("/pairs/")
    page.find("body").send_keys(Keys.TAB)
    assert page.driver.switch_to.active_element.text == "Skip to content"


def test_upload_a_folder_with_one_bad_file(page, tmp_path):
    owner = editor("erin")
    folder = tmp_path / "shoot"
    for side in ("before", "after"):
        (folder / side).mkdir(parents=True)
    for i in range(3):
        before, after = pair_bytes(i)
        (folder / "before" / f"IMG_{i}.jpg").write_bytes(before)
        (folder / "after" / f"IMG_{i}.jpg").write_bytes(after)
    from tests.test_api import _straightened_crop

    coffee = photo("coffee")  # an after cut to 60 % of the before and turned by 3 degrees
    cropped, _ = _straightened_crop(coffee, angle=3.0, area=0.6, export=0.7)
    (folder / "before" / "IMG_crop.jpg").write_bytes(encode(coffee, quality=95))
    (folder / "after" / "IMG_crop.jpg").write_bytes(encode(warm_and_bright(cropped), quality=85))
    (folder / "before" / "broken.jpg").write_bytes(b"this is not a photo")
    (folder / "after" / "broken.jpg").write_bytes(pair_bytes(9)[1])

    page.sign_in("erin")
    page.wait(lambda: page.driver.current_url.endswith("/pairs/"))
    page.find("#upload-tags").send_keys("wedding")
    page.find("#pick-folder").send_keys(str(folder))
    page.wait(lambda: page.find("#upload-summary").text.startswith("Done"), timeout=120, message="the upload")

    assert page.find("#upload-summary").text == "Done: 4 pairs stored, 1 rejected."
    rows = {
        row.find_elements("css selector", "td")[0].text: row for row in page.find_all("#upload-list tbody tr")
    }
    broken = next(row for name, row in rows.items() if name.startswith("broken"))
    assert broken.get_attribute("class") == "rejected"
    assert broken.find_elements("css selector", "td")[2].text == (
        "rejected: before: not a readable image (expected JPEG, PNG, TIFF or WebP)"
    )
    assert sum(row.get_attribute("class") == "stored" for row in rows.values()) == 4
    results = {
        name.split(" ")[0]: row.find_elements("css selector", "td")[2].text for name, row in rows.items()
    }
    assert re.fullmatch(r"stored · aligned: cropped 4\d %, rotated [23]\.\d°", results["IMG_crop"]), results
    assert results["IMG_0"] == "stored", "a whole-photo export says nothing more"
    assert sorted(Pair.objects.filter(owner=owner).values_list("name", flat=True)) == [
        "IMG_0",
        "IMG_1",
        "IMG_2",
        "IMG_crop",
    ]
    assert Pair.objects.filter(tags__name="wedding").count() == 4
    # The grid shows the new pairs without a reload, their thumbnails loaded.
    page.wait(lambda: len(page.find_all("#grid .card")) == 4, message="the refreshed grid")
    page.wait(lambda: page.images_loaded("#grid img"), message="the thumbnails")
    toggle = page.find("#grid .card .toggle")
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "true"
    page.shot("pairs-uploaded")


def test_upload_a_zip_imported_by_a_real_worker(page, tmp_path, celery_worker_process):
    owner = editor("zoe")
    archive = tmp_path / "shoot.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for i in range(3):
            before, after = pair_bytes(20 + i)
            handle.writestr(f"before/IMG_{i}.jpg", before)
            handle.writestr(f"after/IMG_{i}.jpg", after)
        handle.writestr("before/broken.jpg", b"this is not a photo")
        handle.writestr("after/broken.jpg", pair_bytes(29)[1])
        handle.writestr("before/zcopy.jpg", pair_bytes(20)[0])  # IMG_0 again: already uploaded
        handle.writestr("after/zcopy.jpg", pair_bytes(20)[1])

    page.sign_in("zoe")
    page.wait(lambda: page.driver.current_url.endswith("/pairs/"))
    page.find("#pick-zip").send_keys(str(archive))
    # The zip's row follows the import the worker runs, then lists its pairs.
    page.wait(lambda: page.find("#upload-summary").text.startswith("Done"), timeout=120, message="the import")
    assert page.find("#upload-summary").text == "Done: 3 pairs stored, 1 already uploaded, 1 rejected."
    rows = {
        row.find_elements("css selector", "td")[0].text: row.find_elements("css selector", "td")[2].text
        for row in page.find_all("#upload-list tbody tr")
    }
    assert rows["shoot.zip"] == "3 pairs stored, 2 skipped"
    assert (
        rows["shoot.zip: broken"]
        == "rejected: before: not a readable image (expected JPEG, PNG, TIFF or WebP)"
    )
    assert rows["shoot.zip: zcopy"].startswith("already uploaded as pair ")
    assert Pair.objects.filter(owner=owner).count() == 3
    page.wait(lambda: len(page.find_all("#grid .card")) == 3, message="the refreshed grid")
    page.shot("pairs-zip-imported")


def test_training_progress_curve_results_and_models_with_a_real_worker(page, settings, celery_worker_process):
    settings.MIN_PAIRS_FOR_TRAINING = 4
    owner = editor("erin")
    add_pairs(owner, 10)
    page.sign_in("erin")
    page.wait(lambda: page.driver.current_url.endswith("/pairs/"))
    page.open("/training/")
    budget = page.find("#seconds")
    budget.clear()
    budget.send_keys("25")
    page.find("#start-form button[type=submit]").click()
    page.wait(
        lambda: "/training/" in page.driver.current_url and page.find("#job-status"), message="the job page"
    )

    # Watch the page (not the database) while the worker trains: the bar and the curve must move.
    samples = []
    mid_shot = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = page.find("#job-status").text
        width = float(page.find("#job-bar").value_of_css_property("width").rstrip("px") or 0)
        points = int(page.find("#curve").get_attribute("data-points") or 0)
        samples.append((status, width, points, page.find("#job-step").text))
        if status == "running" and points >= 3 and mid_shot is None:
            mid_shot = page.shot("training-running")
        if status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.4)
    job = TrainingJob.objects.get(owner=owner)
    assert samples[-1][0] == "succeeded", (samples[-5:], job.error)
    running = [s for s in samples if s[0] == "running"]
    assert len({s[1] for s in running}) >= 3, running  # the bar moved, several times
    assert [s[1] for s in running] == sorted(s[1] for s in running)  # and only forward
    assert len({s[2] for s in running}) >= 2 and max(s[2] for s in running) >= 2, running  # the curve grew
    assert len({s[3] for s in running}) >= 2  # the step count moved
    assert mid_shot is not None
    assert page.find("#job-eta").text == "–" and page.find("#job-percent").text == "100 %"
    assert "succeeded" in page.find("#events").text
    page.shot("training-finished")

    page.find("#job-outcome a").click()
    page.wait(lambda: "/models/" in page.driver.current_url, message="the models page")
    model = PersonalModel.objects.get(owner=owner)
    row = page.find(f"#model-{model.pk}")
    assert "active" in row.text and f"{model.metrics['val_delta_e_personal']:.2f}" in row.text
    page.shot("models")

    page.open("/results/")
    results = page.find_all("#results .result")
    assert len(results) == model.metrics["val_pairs"]
    first = results[0].text
    assert "Before" in first and "What the model does" in first and "Your own edit" in first
    assert first.count("ΔE00") == 2
    page.wait(lambda: page.images_loaded("#results img"), timeout=60, message="the result images")
    page.shot("results")


def test_try_a_photo_strength_changes_the_preview_and_downloads(page):
    from selenium.webdriver.common.keys import Keys

    editor("erin")
    page.sign_in("erin")
    page.wait(lambda: page.driver.current_url.endswith("/pairs/"))
    page.open("/try/")
    source = Path(page.driver.downloads) / "coffee.jpg"
    source.write_bytes(encode(photo("coffee"), quality=92))
    page.find("#try-file").send_keys(str(source))
    edited = page.find("#try-edited")
    page.wait(
        lambda: edited.get_attribute("data-strength") == "1.00", timeout=60, message="the first preview"
    )
    first_src = edited.get_attribute("src")
    first_sliders = [cell.text for cell in page.find_all("[data-slider]")]
    assert any(value not in ("0", "–") for value in first_sliders)
    page.shot("try-strength-1")

    slider = page.find("#strength")
    for _ in range(10):  # 10 steps of 0.05 with the keyboard: strength 1.5
        slider.send_keys(Keys.ARROW_RIGHT)
    page.wait(lambda: edited.get_attribute("data-strength") == "1.50", timeout=10, message="the new preview")
    assert edited.get_attribute("src") != first_src
    assert [cell.text for cell in page.find_all("[data-slider]")] != first_sliders
    # The preview followed the slider within a second (the last request's round trip, as the page timed it).
    assert int(edited.get_attribute("data-render-ms")) < 1000
    page.shot("try")

    downloads = Path(page.driver.downloads)
    page.find("#download-xmp").click()
    page.wait(lambda: (downloads / "coffee.xmp").exists(), timeout=30, message="the XMP download")
    page.find("#download-jpeg").click()
    page.wait(lambda: (downloads / "coffee-edited.jpg").exists(), timeout=30, message="the JPEG download")
    assert b"crs:Exposure2012" in (downloads / "coffee.xmp").read_bytes()
    assert (downloads / "coffee-edited.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_another_editors_pair_answers_404_in_the_browser(page):
    bob = editor("bob")
    add_pairs(bob, 1)
    pair = Pair.objects.get(owner=bob)
    editor("erin")
    page.sign_in("erin")
    page.wait(lambda: page.driver.current_url.endswith("/pairs/"))
    page.open(f"/pairs/{pair.pk}/before.jpg")
    assert "Not found" in page.text()
    page.open(f"/results/?model={pair.pk}")
    assert "Not found" in page.text()
    page.shot("not-found")
