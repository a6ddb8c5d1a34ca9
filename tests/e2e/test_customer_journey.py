"""A customer buys, manages and recovers; support finds them and pauses their deployment -- all in a real
browser against the running console and the sandbox (Stripe emulator, fake Cloudflare, bundle host, SMTP)."""
import re
import uuid

import httpx
import pytest
from django.contrib.auth import get_user_model

from sandbox.run import DEMO_ACCOUNT_ID, DEMO_TOKEN

pytestmark = [pytest.mark.e2e]

MANAGE_LINK = re.compile(r"https?://\S+/manage/[^/\s]+/")
LICENCE_KEY = re.compile(r"BCL(?:-[A-Z2-9]{5}){6}")
SUPPORT_PASSWORD = "support-e2e-password"


def _mail(console, email: str, needle: str, *, after: int = 0):
    return console.sandbox.mail.wait_for(
        lambda m: email in m.to and m.id > after and needle in (m.text or ""), timeout=30)


def test_buy_manage_recover_and_support_pauses(console, page, browser, settings):
    from dunning.services import dunning_policy_ensure_default

    dunning_policy_ensure_default()  # as the data migration makes it: two WhatsApp steps, so checkout asks for a phone
    email = f"e2e-{uuid.uuid4().hex[:8]}@example.com"

    # -- Pricing page, then Stripe's (sandbox) hosted checkout with the test card ---------------------
    page.goto("/")
    assert page.locator("#plan-pro button").inner_text() == "Subscribe to Pro"
    console.shot(page, "01-pricing")
    page.fill("#email-pro", email)
    page.click("#plan-pro button")
    page.wait_for_url(f"{console.sandbox.stripe.url}/checkout/**")
    page.fill("#card", "4242 4242 4242 4242")
    page.fill("#name", "Erin Example")
    page.fill("#phone", "+55 (11) 98888-7777")
    page.click("button[type=submit]")
    page.wait_for_url(f"{console.url}/checkout/success**")
    assert "Thank you" in page.inner_text("h1")
    console.shot(page, "02-checkout-success")

    # -- The manage link and the licence key arrive through real SMTP -----------------------------------
    link_mail = _mail(console, email, "/manage/")
    manage_url = MANAGE_LINK.search(link_mail.text).group(0)
    key = LICENCE_KEY.search(_mail(console, email, "BCL-").text).group(0)
    activated = httpx.post(f"{console.url}/api/license/activate", timeout=10,
                           json={"key": key, "device_id": "e2e-laptop-01", "name": "Erin's laptop", "platform": "linux"})
    assert activated.status_code == 201, activated.text

    page.goto(manage_url)
    assert "Pro is active" in page.inner_text(".status-card")
    assert "+5511988887777" in page.inner_text("#phone")  # Stripe's phone, in E.164
    assert "Erin's laptop" in page.inner_text("#licence")

    # -- Connect Cloudflare on the deploy page, then the first push makes it Live --------------------
    page.click("text=Set up your deployment")
    page.fill("#id_account_id", DEMO_ACCOUNT_ID)
    page.fill("#id_script_name", "erin-app")
    page.fill("#id_api_token", "cf_demo_token_expired_0000000000")
    page.click("text=Verify and connect")
    assert page.locator(".field-error").count() >= 1  # Cloudflare said no: nothing saved, the field says why
    console.shot(page, "03-deploy-token-rejected")
    page.fill("#id_api_token", DEMO_TOKEN)
    page.click("text=Verify and connect")
    # The first push is queued right after the save (the console runs tasks inline here): Live at once,
    # with no hourly run and no push_deployments command.
    assert "Live" in page.inner_text(".readiness")
    console.shot(page, "05-deploy-live")

    from deployments.push import deployments_push

    assert deployments_push().counts["pushed"] == 0  # nothing left for the hourly run

    # -- Manage page: rotate the token (checked with Cloudflare), deactivate the device ---------------
    page.goto(manage_url)
    token_input = page.locator("input[type=password]").first
    token_input.fill("cf_demo_token_expired_0000000000")
    page.click("text=Verify and save token")
    assert page.locator(".field-error").count() >= 1
    new_token = "cf_rotated_token_" + uuid.uuid4().hex[:16]
    console.sandbox.cloudflare.add_token(new_token, DEMO_ACCOUNT_ID)
    page.locator("input[type=password]").first.fill(new_token)
    page.click("text=Verify and save token")
    assert "Cloudflare accepted the new token" in page.inner_text(".flashes")
    assert new_token[-4:] in page.inner_text("[id^=deployment-]")
    console.shot(page, "06-manage")
    page.click("button:has-text('Deactivate')")
    assert "was deactivated" in page.inner_text(".flashes")
    assert "No device is using this licence yet" in page.inner_text("#licence")

    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    mobile = phone.new_page()
    mobile.goto(manage_url)
    console.shot(mobile, "07-manage-phone")
    phone.close()

    # -- Recover a link by email ----------------------------------------------------------------------
    page.goto(f"{console.url}/recover")
    page.fill("input[name=email]", email)
    page.click("text=Email me a link")
    assert "If this email belongs to a subscription" in page.inner_text("main")
    console.shot(page, "08-recover-sent")
    recovered = MANAGE_LINK.search(_mail(console, email, "/manage/", after=link_mail.id).text).group(0)
    page.goto(recovered)
    assert "Your subscription" in page.inner_text("h1")

    # -- Support: log in, find the customer by email, pause the deployment ---------------------------
    from billing_console.ops.support import support_group_ensure

    support = get_user_model().objects.create_user("support-e2e", password=SUPPORT_PASSWORD, is_staff=True)
    support.groups.add(support_group_ensure())
    page.goto(f"{console.url}/admin/")
    page.fill("#id_username", "support-e2e")
    page.fill("#id_password", SUPPORT_PASSWORD)
    page.click("input[type=submit]")
    assert page.locator(".console-dashboard").count() == 1
    console.shot(page, "09-admin-dashboard")
    page.fill(".console-search input[type=search]", email)
    page.press(".console-search input[type=search]", "Enter")
    page.wait_for_url("**/admin/billing_console/customer/*/change/")
    console.shot(page, "10-admin-customer")
    row = page.locator(".action-row[data-model='deployments.deployment']").first
    row.locator("select[name=action]").select_option("pause")
    row.locator("button").click()
    assert "1 deployment paused" in page.inner_text(".messagelist")

    page.goto(manage_url)
    assert "Support paused updates to this deployment" in page.inner_text("main")
    console.shot(page, "11-manage-paused")

    # -- An old or revoked link lands on a clear page --------------------------------------------------
    page.goto(f"{console.url}/manage/1:bad:link/")
    assert "expired" in page.inner_text("h1")
    console.shot(page, "12-link-invalid")
