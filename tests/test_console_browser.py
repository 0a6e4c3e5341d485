"""The console in a real headless Chromium, against the real receiver (gunicorn) and worker.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them) and selenium (the
test extra); where they are absent these tests are skipped, saying so.
"""

import json
import shutil
import urllib.parse

import pytest
import requests

from .support import TEST_KEY, sign_standard, wait_for

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - the test extra brings it
    webdriver = None

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER and webdriver),
        reason="the console's browser tests need Chromium: apt-get install chromium "
        "chromium-driver (and pip install -e '.[test]' for selenium)",
    ),
]
TOKEN = "browser-test-console-token-0123456789"


@pytest.fixture
def browser(tmp_path):
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1600"):  # fmt: skip
        options.add_argument(arg)
    # The page's console messages, where Chromium reports Content-Security-Policy refusals.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def signup(url: str, user: str, email: str) -> None:
    body = json.dumps({"type": "user.created", "data": {"user_id": user, "email": email}})
    answer = requests.post(
        f"{url}/webhooks/signup", data=body, headers=sign_standard(body, f"msg_{user}"), timeout=10
    )
    assert answer.status_code == 200, answer.text


def text_in(driver, selector: str, text: str):
    return EC.text_to_be_present_in_element((By.CSS_SELECTOR, selector), text)


def test_a_signup_found_a_failure_replayed(browser, start_web, start_inprocess_worker, emulator):
    web = start_web(CONSOLE_TOKEN=TOKEN)
    start_inprocess_worker()
    wait = WebDriverWait(browser, 30)

    # Open the console with the token, as `stripe-worker dev` prints it.
    browser.get(f"{web.url}/console/#token={urllib.parse.quote(TOKEN)}")
    wait.until(EC.visibility_of_element_located((By.ID, "console")))
    assert TOKEN not in browser.current_url  # the fragment is dropped once signed in
    wait.until(text_in(browser, "#figures", "live workers"))

    # A signup's entry appears on the customers stream, live.
    signup(web.url, "u_browser1", "jenny.browser@example.com")
    wait.until(text_in(browser, "#stream-customers", "jenny.browser@example.com"))
    wait.until(text_in(browser, "#legend", "published: 1"))

    # Found by email: its trail, from received to published.
    search = browser.find_element(By.ID, "search")
    search.send_keys("Jenny.Browser@example.com")
    browser.find_element(By.CSS_SELECTOR, "#search-form button").click()
    wait.until(
        EC.presence_of_element_located((By.CSS_SELECTOR, '#trail li[data-step="published"]'))
    )
    steps = [
        li.get_attribute("data-step") for li in browser.find_elements(By.CSS_SELECTOR, "#trail li")
    ]
    assert steps == ["received", "published"]

    # A failure on the error stream (the key revoked), replayed once the key is back.
    requests.post(f"{emulator.url}/_emulator/keys", json={"revoke": [TEST_KEY]}, timeout=5)
    signup(web.url, "u_browser2", "mallory.browser@example.com")
    replay = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#errors button.replay")))
    assert "authentication_error" in browser.find_element(By.ID, "errors").text
    requests.post(f"{emulator.url}/_emulator/keys", json={"allow": [TEST_KEY]}, timeout=5)
    replay.click()
    wait.until(text_in(browser, "#replay-result", "queued again"))
    wait.until(text_in(browser, "#stream-customers", "mallory.browser@example.com"))
    wait.until(text_in(browser, "#errors", "replayed"))
    assert not browser.find_elements(By.CSS_SELECTOR, "#errors button.replay")
    for secret in (TOKEN, TEST_KEY):
        assert secret not in browser.page_source


def test_without_the_token_401_and_a_sign_in_form(browser, start_web):
    web = start_web(CONSOLE_TOKEN=TOKEN)
    page = requests.get(f"{web.url}/console/", timeout=5)
    assert page.status_code == 401
    assert requests.get(f"{web.url}/console/api/overview", timeout=5).status_code == 401

    browser.get(f"{web.url}/console/")
    wait = WebDriverWait(browser, 15)
    wait.until(EC.visibility_of_element_located((By.ID, "signin")))
    assert not browser.find_element(By.ID, "console").is_displayed()
    browser.find_element(By.ID, "token").send_keys("not-the-token-at-all")
    browser.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    wait.until(text_in(browser, "#signin-error", "not the console token"))
    assert not browser.find_element(By.ID, "console").is_displayed()
    token = browser.find_element(By.ID, "token")
    token.clear()
    token.send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    wait.until(EC.visibility_of_element_located((By.ID, "console")))
    wait_for(lambda: "live workers" in browser.find_element(By.ID, "figures").text, timeout=15)


def test_sign_out_ends_the_session_and_the_policy_refuses_nothing(browser, start_web):
    web = start_web(CONSOLE_TOKEN=TOKEN)
    wait = WebDriverWait(browser, 30)
    browser.get(f"{web.url}/console/#token={urllib.parse.quote(TOKEN)}")
    wait.until(text_in(browser, "#figures", "live workers"))  # the script ran under the CSP
    cookie = browser.get_cookie("stripe_worker_console")["value"]
    kept = {"stripe_worker_console": cookie}
    overview = f"{web.url}/console/api/overview"
    assert requests.get(overview, cookies=kept, timeout=5).status_code == 200

    browser.find_element(By.ID, "signout").click()
    wait.until(EC.visibility_of_element_located((By.ID, "signin")))
    # The cookie as it was before sign-out, from elsewhere: the server has forgotten it.
    assert requests.get(overview, cookies=kept, timeout=5).status_code == 401
    refused = [m for m in browser.get_log("browser") if "Content Security Policy" in m["message"]]
    assert refused == []
