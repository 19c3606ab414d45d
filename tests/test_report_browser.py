"""The report in a real headless Chromium: no console errors, a click shows the rationale, the walk
on the tree is the journey's, and hostile problem text renders as text."""

from __future__ import annotations

import os
import shutil

import pytest

from pipeline.report import compare_runs, run_report
from tests.report_runs import (
    EVIL,
    EVIL_ID,
    STATS_A,
    STATS_B,
    write_judged_run,
    write_methods_run,
    write_run,
)

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    # CI installs both (.ci/setup); only a machine without them may skip, and never under CI.
    if os.environ.get("CI"):
        raise RuntimeError("chromium and chromedriver are required under CI (see .ci/setup)")
    pytest.skip("needs Debian's chromium and chromium-driver", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    write_run(tmp / "run", [(EVIL_ID, EVIL), ("plain", "What is 1 + 1?")])
    run_report(tmp / "run", tmp / "report")
    return tmp / "report"


@pytest.fixture(scope="module")
def judged_site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("judged")
    write_judged_run(tmp / "run")
    run_report(tmp / "run", tmp / "report")
    return tmp / "report"


@pytest.fixture(scope="module")
def compare_site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    write_methods_run(tmp / "a", ["p1", "p2", "p3"], STATS_A)
    write_methods_run(tmp / "b", ["p2", "p4", "p3"], STATS_B, scale=2)
    compare_runs(tmp / "a", tmp / "b", tmp / "compare")
    return tmp / "compare"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = Options()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    # Background-networking flags: this machine's network is closed, and Chromium phones home.
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
        "--disable-background-networking", "--disable-component-update", "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def problem_page(site, problem_id: str):
    from pipeline.report.html import safe_name

    return site / "problems" / safe_name(problem_id)


def console_errors(browser) -> list:
    return [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def test_pages_load_without_console_errors(site, browser):
    for page in [site / "index.html", problem_page(site, "plain"), problem_page(site, EVIL_ID)]:
        browser.get(page.as_uri())
        assert console_errors(browser) == [], page


def test_clicking_a_node_shows_its_rationale(site, browser, tmp_path):
    browser.get(problem_page(site, "plain").as_uri())
    rationale = browser.find_element(By.CSS_SELECTOR, ".rationale")
    assert not rationale.is_displayed()
    browser.find_element(By.CSS_SELECTOR, '[data-node-id="1"]').click()
    assert rationale.is_displayed()
    assert "1 + 1 is 2, not 3 <img src=x onerror=alert(3)>" in rationale.text
    browser.save_screenshot(str(tmp_path / "problem.png"))


def test_the_walk_highlighted_on_the_tree_is_the_journeys(site, browser):
    browser.get(problem_page(site, "plain").as_uri())
    visits = [0, 1, 0, 2, 3]  # the journey written by write_run
    expected = {n: ",".join(str(i) for i, v in enumerate(visits) if v == n) for n in set(visits)}
    walked = {
        int(e.get_attribute("data-node-id")): e.get_attribute("data-walk")
        for e in browser.find_elements(By.CSS_SELECTOR, "[data-node-id][data-walk]")
    }
    assert walked == expected
    shortcut = {
        int(e.get_attribute("data-node-id")) for e in browser.find_elements(By.CSS_SELECTOR, ".shortcut")
    }
    assert shortcut == {0, 2, 3}


def test_script_in_a_problem_renders_as_text(site, browser):
    browser.get(problem_page(site, EVIL_ID).as_uri())
    assert "<script>alert(1)</script>" in browser.find_element(By.ID, "problem-text").text
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # noqa: B018 - an executed alert() would be waiting here
    browser.get((site / "index.html").as_uri())
    assert "<script>alert(1)</script>" in browser.find_element(By.ID, "rows").text


def test_verdict_and_answer_check_show_as_two_marks(judged_site, browser):
    browser.get(problem_page(judged_site, "half").as_uri())
    node = browser.find_element(By.CSS_SELECTOR, '[data-node-id="2"]')
    verdict = node.find_element(By.CSS_SELECTOR, ".mark.verdict")
    check = node.find_element(By.CSS_SELECTOR, ".mark.check")
    assert verdict.is_displayed() and verdict.text == "critic: correct"
    assert check.is_displayed() and check.text == "answer <b>7</b> \u2717 wrong \u00b7 math-verify"
    assert verdict.value_of_css_property("color") != check.value_of_css_property("color")
    cut = browser.find_element(By.CSS_SELECTOR, '[data-node-id="5"] .mark.check')
    assert cut.text == "cut at max depth"
    node.click()
    panel = browser.find_element(By.ID, "panel-body").text
    assert "answer <b>7</b> \u2717 wrong \u00b7 math-verify" in panel and "tree value\n0.00" in panel
    assert console_errors(browser) == []


def test_compare_pages_load_without_console_errors(compare_site, browser):
    for page in [compare_site / "index.html", problem_page(compare_site, "p3")]:
        browser.get(page.as_uri())
        assert console_errors(browser) == [], page
    # Both runs' failed propose-critique thoughts hold a script: shown as text, never run.
    sides = browser.find_elements(By.CSS_SELECTOR, '[data-method="propose-critique"] .pair > div')
    assert [("<script>alert(9)</script>" in s.text) for s in sides] == [True, True]
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # noqa: B018 - an executed alert() would be waiting here
