"""The console and the API docs in a real browser, on the whole system (embedded default):
an operator signs in, watches the counts, filters the jobs, opens a discarded job, retries it
and sees it complete; then opens job_svc's /docs and calls an RPC from Swagger UI. Each step
leaves a screenshot in the test artifacts (tests/browser/chromium.py)."""

from __future__ import annotations

import signal
from pathlib import Path

from mcsv.v1 import job_pb2, user_pb2
from mcsv.v1.job_twirp import JobServiceClient
from mcsv.v1.user_twirp import UserServiceClient
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import Select, WebDriverWait

from internal.auth.pages import login_url
from internal.supervisor import System
from tests.browser.chromium import chromium, screenshot
from tests.e2e.system import bring_back, peer, wait_job, whole_system

FINAL = {job_pb2.JOB_STATE_COMPLETED, job_pb2.JOB_STATE_DISCARDED, job_pb2.JOB_STATE_CANCELLED}


def discarded_welcome_email(system: System) -> str:
    """A welcome email job discarded for real: email_svc is down for longer than the (short)
    retry horizon, so every attempt fails unavailable until the job is given up. email_svc is
    back afterwards, so that a retry can deliver it. Returns the job's id."""
    settings = system.settings
    with peer(settings, UserServiceClient) as users, peer(settings, JobServiceClient) as jobs:
        system.kill("email_svc", signal.SIGTERM)
        created = users.create_user(
            user_pb2.CreateUserRequest(name="Dee Scarded", email="dee@example.com")
        )
        job = wait_job(jobs, created.job_id, FINAL, timeout=90)
        assert job.job.state == job_pb2.JOB_STATE_DISCARDED
        bring_back(system, "email_svc")
        # Another user, whose welcome email goes out: a completed job among the discarded one.
        done = users.create_user(user_pb2.CreateUserRequest(name="Al Right", email="al@ex.com"))
        wait_job(jobs, done.job_id, FINAL, timeout=60)
    return created.job_id


def wait(browser: WebDriver, seconds: float = 30) -> WebDriverWait[WebDriver]:
    return WebDriverWait(browser, seconds, poll_frequency=0.2)


def test_an_operator_retries_a_discarded_job_in_the_console_and_calls_an_rpc_from_docs(
    tmp_path: Path,
) -> None:
    with whole_system(tmp_path, workers=1, JOB_RETRY_HORIZON_SECONDS="3") as system:
        job_id = discarded_welcome_email(system)
        settings = system.settings
        console = f"{settings.url('console')}/console"
        with chromium() as browser:
            # Signs in with the link `just up` prints (the token only in its fragment).
            browser.get(login_url(settings, console))
            wait(browser).until(ready.url_to_be(console))
            stats = browser.find_element(By.ID, "stats")
            wait(browser).until(lambda _: "emails" in stats.text)
            emails_row = stats.find_element(By.XPATH, ".//tr[th[normalize-space()='emails']]")
            assert emails_row.text.split()[1:] == ["0", "0", "0", "0", "1", "1", "0"]
            wait(browser, 10).until(lambda b: b.find_element(By.ID, "live").text != "live")
            health = browser.find_element(By.ID, "health").text
            assert health.count("NOT READY") == 0 and health.count("ready") >= 6
            screenshot(browser, "1-console-overview")

            # Filters the jobs: the emails queue's discarded jobs are the one.
            browser.find_element(By.LINK_TEXT, "Jobs").click()
            Select(browser.find_element(By.NAME, "queue")).select_by_visible_text("emails")
            Select(browser.find_element(By.NAME, "state")).select_by_visible_text("discarded")
            browser.find_element(By.CSS_SELECTOR, "#job-filters button").click()
            wait(browser).until(ready.url_contains("state=discarded"))
            rows = browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")
            assert len(rows) == 1 and "dee@example.com" in rows[0].text
            screenshot(browser, "2-jobs-filtered-discarded")

            # Opens the job: its history and its attempts' errors.
            rows[0].find_element(By.CSS_SELECTOR, "a.job-link").click()
            wait(browser).until(ready.url_contains(f"/console/jobs/{job_id}"))
            assert browser.find_element(By.ID, "job-state").text == "discarded"
            assert "unavailable" in browser.find_element(By.ID, "errors").text
            assert "discarded" in browser.find_element(By.ID, "events").text
            screenshot(browser, "3-job-discarded")

            # Retries it: RetryJob through the console; the page follows it to completed.
            browser.find_element(By.CSS_SELECTOR, "button[data-rpc=RetryJob]").click()
            wait(browser, 60).until(
                lambda b: b.find_element(By.ID, "job-state").text == "completed"
            )
            events = browser.find_element(By.ID, "events").text
            assert "retried" in events and "completed" in events
            screenshot(browser, "4-job-retried-completed")

            # The mailbox shows the delivered email, rendered.
            browser.get(f"{console}/emails?recipient=dee%40example.com")
            browser.find_element(By.CSS_SELECTOR, "#emails tbody a").click()
            frame = wait(browser).until(lambda b: b.find_element(By.CSS_SELECTOR, "iframe.email"))
            assert frame.get_attribute("sandbox") == ""
            screenshot(browser, "5-mailbox-email")

            # job_svc's API docs: authorizes as the operator and calls GetQueueStats.
            browser.get(f"{settings.url('job_svc')}/docs")
            wait(browser).until(lambda b: b.find_element(By.CSS_SELECTOR, "button.authorize"))
            browser.find_element(By.CSS_SELECTOR, "button.authorize").click()
            token = wait(browser).until(
                lambda b: b.find_element(By.CSS_SELECTOR, ".auth-container input")
            )
            token.send_keys(settings.operator_token)
            browser.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper button.authorize").click()
            browser.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper button.btn-done").click()
            operation = browser.find_element(By.ID, "operations-default-GetQueueStats")
            operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
            # "Try it out" is on from the start (the docs page enables it). The example body
            # filters by a queue named "string": every queue instead.
            body_text = wait(browser).until(
                lambda _: operation.find_element(By.CSS_SELECTOR, "textarea.body-param__text")
            )
            body_text.send_keys(Keys.CONTROL, "a")
            body_text.send_keys(Keys.DELETE)
            body_text.send_keys("{}")
            operation.find_element(By.CSS_SELECTOR, "button.execute").click()
            status = wait(browser).until(
                lambda _: operation.find_element(
                    By.CSS_SELECTOR, ".live-responses-table tr.response .response-col_status"
                )
            )
            assert status.text.strip() == "200"
            body = operation.find_element(By.CSS_SELECTOR, ".live-responses-table pre").text
            assert '"emails"' in body and '"completed"' in body
            screenshot(browser, "6-docs-try-it-out")


def test_the_console_fits_a_phone_and_refuses_strangers(tmp_path: Path) -> None:
    with whole_system(tmp_path, workers=1) as system:
        settings = system.settings
        with peer(settings, UserServiceClient) as users, peer(settings, JobServiceClient) as jobs:
            made = users.create_user(user_pb2.CreateUserRequest(name="Pho Ne", email="p@ex.com"))
            wait_job(jobs, made.job_id, FINAL)
        console = f"{settings.url('console')}/console"
        with chromium(390, 844, phone=True) as browser:
            browser.get(f"{console}/jobs")
            assert "401" in browser.find_element(By.TAG_NAME, "body").text
            browser.get(f"{console}/login")
            browser.find_element(By.NAME, "token").send_keys(settings.operator_token)
            browser.find_element(By.CSS_SELECTOR, "form button").click()
            wait(browser).until(ready.url_to_be(console))
            assert browser.execute_script("return window.innerWidth") == 390
            width = browser.execute_script("return document.documentElement.scrollWidth")
            assert width <= 390  # nothing wider than the phone: no sideways scrolling
            screenshot(browser, "7-console-phone")
            browser.find_element(By.LINK_TEXT, "Jobs").click()
            wait(browser).until(ready.url_contains("/console/jobs"))
            assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
            link = browser.find_element(By.CSS_SELECTOR, "#jobs a.job-link")  # in sight
            assert link.rect["x"] + link.rect["width"] <= 390
            screenshot(browser, "8-jobs-phone")
