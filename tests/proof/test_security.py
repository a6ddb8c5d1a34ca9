"""Security checks: known secret values never reach an answer, an admin page, a log line or an email;
and the auth matrix (anonymous, customer link, support user, superuser) over the admin and the APIs."""
import json
import logging

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.core import mail
from django.core.cache import caches
from django.urls import NoReverseMatch, reverse

from billing_console.models import Customer
from billing_console.ops.support import CONSOLE_APPS, SUPPORT_CHANGES, SUPPORT_VIEWS, support_group_ensure
from tests.stripe.conftest import signed_headers
from tests.proof.production import SECRETS

pytestmark = pytest.mark.django_db


@pytest.fixture
def known_secrets(stripe_settings):
    """The production-shaped fake secrets of tests/proof/production.py, configured."""
    for name, value in SECRETS.items():
        if name != "SECRET_KEY":
            setattr(stripe_settings, name, value)
    return [v for v in SECRETS.values() if v]


def admin_urls() -> list[tuple[str, str, object]]:
    """(app_label, changelist URL, model) of every model in the admin."""
    urls = []
    for model in admin.site._registry:
        try:
            urls.append((model._meta.app_label,
                         reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"), model))
        except NoReverseMatch:
            continue
    return urls


def checkout_and_pay(client, emulator, email="leak@example.com"):
    response = client.post("/api/billing/checkout", {"email": email, "plan": "pro"}, content_type="application/json")
    assert response.status_code == 200, response.content
    session_id = response.json()["url"].rstrip("/").split("/")[-1]
    assert emulator.pay_checkout(session_id)["ok"]
    return response


def deliver_all(client, emulator, django_capture_on_commit_callbacks, responses):
    for event in emulator.events:
        body = json.dumps(event).encode()
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/api/billing/webhook", body, content_type="application/json",
                                   **signed_headers(body, SECRETS["STRIPE_WEBHOOK_SECRET"]))
        assert response.status_code == 200, response.content
        responses.append(response)


def test_known_secrets_never_appear_in_answers_pages_logs_or_emails(
        client, emulator, known_secrets, caplog, django_capture_on_commit_callbacks):
    caplog.set_level(logging.DEBUG)
    responses = [checkout_and_pay(client, emulator)]
    deliver_all(client, emulator, django_capture_on_commit_callbacks, responses)
    # A webhook with a wrong signature and a Stripe failure: error paths log the most.
    responses.append(client.post("/api/billing/webhook", b"{}", content_type="application/json",
                                 HTTP_STRIPE_SIGNATURE="t=1,v1=00"))
    emulator.set_faults(api_500=10)
    responses.append(client.post("/api/billing/checkout", {"email": "second@example.com", "plan": "pro"},
                                 content_type="application/json"))
    emulator.set_faults(reset=True)

    customer = Customer.objects.get(email="leak@example.com")
    link = next(word for m in mail.outbox for word in m.body.split() if "/manage/" in word)
    token = link.rsplit("/manage/", 1)[1].strip("/")
    responses += [client.get(f"/manage/{token}/"), client.post("/api/billing/portal", {"token": token},
                                                               content_type="application/json")]
    responses += [client.get("/health"), client.get("/api/cloud/health"), client.get("/api/license/public-key"),
                  client.get("/api/ops/summary", HTTP_AUTHORIZATION=f"Bearer {SECRETS['OPS_SECRET']}"),
                  client.get("/api/license/status", HTTP_X_LICENSE_KEY="BCL-NOPE", data={"device_id": "d1"})]

    root = User.objects.create_superuser("root", "root@example.com", "pw-proof-0123456789")
    client.force_login(root)
    responses.append(client.get("/admin/"))
    for _, url, model in admin_urls():
        responses.append(client.get(url))
        obj = model._default_manager.first()
        if obj is not None:
            responses.append(client.get(reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change",
                                                args=[obj.pk])))
    responses.append(client.get(reverse("admin:billing_console_customer_change", args=[customer.pk])))

    assert all(r.status_code < 500 or r.status_code == 502 for r in responses), [r.status_code for r in responses]
    bodies = [r.content.decode("utf-8", "replace") for r in responses]
    emails = [f"{m.subject}\n{m.body}\n" + "".join(str(a[0]) for a in getattr(m, "alternatives", [])) for m in mail.outbox]
    logs = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    hits = [(kind, secret[:12]) for secret in known_secrets
            for kind, texts in (("response", bodies), ("email", emails), ("log", [logs])) for text in texts if secret in text]
    assert len(bodies) > 30 and mail.outbox and caplog.records
    assert hits == []


# --- Auth matrix -----------------------------------------------------------------------------
@pytest.fixture
def users():
    support = User.objects.create_user("support1", "s@example.com", "pw-proof-0123456789", is_staff=True)
    support_group_ensure()
    support.groups.add(Group.objects.get(name="support"))
    staff = User.objects.create_user("staff-no-perms", "n@example.com", "pw-proof-0123456789", is_staff=True)
    root = User.objects.create_superuser("root", "root@example.com", "pw-proof-0123456789")
    customer = User.objects.create_user("customer-user", "c@example.com", "pw-proof-0123456789")  # not staff
    return {"support": support, "staff": staff, "root": root, "customer": customer}


def expected_admin(role: str, app_label: str, page: str, model_name: str = "") -> set[int]:
    if role == "anonymous" or role == "customer":
        return {302}  # to the login page
    if role == "root":
        return {200, 403} if page == "add" else {200}  # read-only histories refuse "add"
    if role == "staff":
        return {403}
    # support: sees every console model and the login lockouts, changes a few through actions, adds nothing,
    # no auth/dj-stripe/queue/two-factor devices.
    visible = app_label in CONSOLE_APPS or model_name in SUPPORT_VIEWS.get(app_label, ())
    return {200} if (visible and page == "changelist") else {403}


@pytest.mark.parametrize("role", ["anonymous", "customer", "staff", "support", "root"])
def test_admin_pages_answer_each_role_exactly(client, users, role):
    if role != "anonymous":
        client.force_login(users[role])
    wrong = []
    for app_label, url, model in admin_urls():
        for page, target in (("changelist", url), ("add", url + "add/")):
            status = client.get(target).status_code
            if status not in expected_admin(role, app_label, page, model._meta.model_name):
                wrong.append((role, page, model._meta.label, status))
    assert wrong == []
    index = client.get("/admin/").status_code
    assert index == (200 if role in ("support", "root", "staff") else 302)


def test_support_cannot_reach_users_groups_or_the_task_queue_and_has_no_add_or_delete(users):
    support = User.objects.get(pk=users["support"].pk)
    perms = support.get_all_permissions()
    assert perms, "the support group has permissions"
    outside = {p for p in perms if p.split(".")[0] not in CONSOLE_APPS}
    assert outside == {f"{app}.view_{m}" for app, models in SUPPORT_VIEWS.items() for m in models}
    assert not [p for p in perms if p.split(".")[1].startswith(("add_", "delete_"))]
    assert not support.is_superuser


def test_a_customer_link_opens_only_its_own_manage_page(client, users):
    from billing_console.manage_links import manage_link_token

    customer = Customer.objects.create(email="link@example.com", subscription_id="sub_link", subscription_status="active",
                                       plan="pro")
    token = manage_link_token(customer)
    assert client.get(f"/manage/{token}/").status_code == 200
    assert client.get(f"/manage/{token}x/").status_code in (400, 403, 404)
    assert client.get("/admin/").status_code == 302  # the link is no admin session
    assert client.get(reverse("admin:billing_console_customer_changelist")).status_code == 302


@pytest.mark.parametrize("role", ["anonymous", "support", "root"])
def test_api_routes_take_their_own_credentials_not_an_admin_session(client, users, settings, role):
    settings.OPS_SECRET = SECRETS["OPS_SECRET"]
    settings.STRIPE_WEBHOOK_SECRET = SECRETS["STRIPE_WEBHOOK_SECRET"]
    settings.LICENSE_SIGNING_KEY = SECRETS["LICENSE_SIGNING_KEY"]
    if role != "anonymous":
        client.force_login(users[role])
    assert client.get("/api/ops/summary").status_code == 401
    assert client.get("/api/ops/summary", HTTP_AUTHORIZATION=f"Bearer {SECRETS['OPS_SECRET']}").status_code == 200
    assert client.post("/api/billing/webhook", b"{}", content_type="application/json").status_code == 400
    assert client.post("/api/billing/portal", {}, content_type="application/json").status_code == 401
    assert client.get("/api/license/status", {"device_id": "d1"}).status_code in (400, 401, 404)
    assert client.get("/health").status_code == 200


# --- Admin actions and the admin's own POST views ------------------------------------------------
@pytest.fixture
def viewer():
    """Staff with every console view permission and no change one: a read-only group someone may make."""
    from django.contrib.auth.models import Permission

    user = User.objects.create_user("viewer", "v@example.com", "pw-proof-0123456789", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=CONSOLE_APPS,
                                                        codename__startswith="view_"))
    return User.objects.get(pk=user.pk)


def expected_actions(role: str, model, model_admin) -> set[str]:
    every = {a if isinstance(a, str) else a.__name__ for a in model_admin.actions or []}
    if role == "root":
        return every
    if role == "support":
        return every if model._meta.model_name in SUPPORT_CHANGES.get(model._meta.app_label, ()) else set()
    return set()  # viewer (view only) and staff without permissions: look, never act


@pytest.mark.parametrize("role", ["staff", "viewer", "support", "root"])
def test_every_admin_action_is_offered_to_exactly_the_roles_that_may_change_its_rows(rf, users, viewer, role):
    user = viewer if role == "viewer" else users[role]
    wrong, seen = [], 0
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in CONSOLE_APPS:
            continue
        request = rf.post("/admin/")
        request.user = user
        offered = set(model_admin.get_actions(request)) - {"delete_selected"}  # Django's, checked below
        seen += len(offered)
        if offered != expected_actions(role, model, model_admin):
            wrong.append((model._meta.label, sorted(offered)))
        if "delete_selected" in model_admin.get_actions(request):
            wrong.append((model._meta.label, "delete_selected"))  # console rows are never bulk-deleted
    assert wrong == []
    if role == "root":
        assert seen > 20  # the walk saw the actions, it did not pass by finding none


@pytest.mark.parametrize("role, runs", [("anonymous", False), ("viewer", False), ("support", True), ("root", True)])
def test_an_action_posted_to_the_changelist_runs_only_for_a_role_that_may_change(client, users, viewer, role, runs):
    customer = Customer.objects.create(email="act@example.com")
    salt = customer.manage_salt
    if role != "anonymous":
        client.force_login(viewer if role == "viewer" else users[role])
    response = client.post(reverse("admin:billing_console_customer_changelist"),
                           {"action": "revoke_manage_links", "_selected_action": [customer.pk]})
    customer.refresh_from_db()
    assert (customer.manage_salt != salt) is runs
    assert response.status_code == (302 if role == "anonymous" or runs else 200)  # 200: "No action selected"


@pytest.mark.parametrize("role, expected", [
    ("anonymous", {"resync": 302, "run": 302, "import": 302, "email": 302}),
    ("viewer", {"resync": 403, "run": 403, "import": 403, "email": 403}),
    # resync: back to the customer page; email: the form again, no address sent
    ("support", {"resync": 302, "run": 403, "import": 403, "email": 400}),
    ("root", {"resync": 302, "run": 302, "import": 400, "email": 400}),  # import: the form again, no file sent
])
def test_the_admin_post_views_answer_each_role_exactly(client, users, viewer, role, expected, monkeypatch):
    import billing_console.admin.customers as console_admin

    customer = Customer.objects.create(email="post@example.com")
    monkeypatch.setattr(console_admin, "customer_resync", lambda **kwargs: kwargs["customer"])  # no Stripe here
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: None)  # the run is queued, not run
    if role != "anonymous":
        client.force_login(viewer if role == "viewer" else users[role])
    got = {
        "resync": client.post(reverse("admin:billing_console_customer_resync", args=[customer.pk])).status_code,
        "run": client.post(reverse("admin:billing_console_reconciliationrun_run")).status_code,
        "import": client.post(reverse("admin:billing_console_ledgerentry_import")).status_code,
        "email": client.post(reverse("admin:billing_console_customer_change_email", args=[customer.pk])).status_code,
    }
    assert got == expected


def console_routes() -> list[str]:
    """Every URL outside the admin, path parameters filled with values that match nothing."""
    from django.urls import get_resolver

    fill = {"<str:token>": "not-a-token", "<int:activation_id>": "1",
            "<uuid:deployment_id>": "00000000-0000-0000-0000-000000000000"}

    def walk(patterns, prefix=""):
        for p in patterns:
            if hasattr(p, "url_patterns"):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            else:
                yield prefix + str(p.pattern)

    routes = []
    for route in walk(get_resolver().url_patterns):
        if route.startswith("admin"):
            continue
        for param, value in fill.items():
            route = route.replace(param, value)
        assert "<" not in route, f"no sample value for a parameter of {route}"
        routes.append("/" + route)
    return routes


@pytest.mark.parametrize("role", ["support", "root"])
def test_an_admin_session_opens_nothing_outside_the_admin(client, users, settings, role):
    """The customer pages and APIs answer a signed-in staff member exactly as they answer anyone."""
    for name in ("OPS_SECRET", "STRIPE_WEBHOOK_SECRET", "LICENSE_SIGNING_KEY"):  # configured: no 503 by design
        setattr(settings, name, SECRETS[name])
    settings.USAGE_API_SECRET = "usage-proof-secret-0123456789"  # unset, the usage API answers 503 by design
    routes = console_routes()
    assert len(routes) >= 20

    def answers() -> dict:
        caches["default"].clear()  # each pass starts with fresh rate-limit windows
        return {**{(r, "get"): client.get(r).status_code for r in routes},
                **{(r, "post"): client.post(r, b"{}", content_type="application/json").status_code for r in routes}}

    anonymous = answers()
    client.force_login(users[role])
    signed_in = answers()
    assert {k: (anonymous[k], v) for k, v in signed_in.items() if v != anonymous[k]} == {}
    assert not [k for k, v in signed_in.items() if v >= 500]


# --- The staff login: login form, two-factor page, lockouts -----------------------------------------
@pytest.mark.parametrize("role, expected", [
    ("anonymous", {"login": 200, "2fa": 302, "2fa_post": 302, "lockouts": 302, "unlocked": False}),
    ("customer", {"login": 200, "2fa": 302, "2fa_post": 302, "lockouts": 302, "unlocked": False}),  # not staff
    ("staff", {"login": 302, "2fa": 200, "2fa_post": 400, "lockouts": 403, "unlocked": False}),
    ("support", {"login": 302, "2fa": 200, "2fa_post": 400, "lockouts": 200, "unlocked": False}),  # looks only
    ("root", {"login": 302, "2fa": 200, "2fa_post": 400, "lockouts": 200, "unlocked": True}),
])
def test_the_login_two_factor_and_lockout_views_answer_each_role_exactly(client, users, settings, role, expected):
    from axes.models import AccessAttempt

    settings.STAFF_2FA = "optional"
    attempt = AccessAttempt.objects.create(username="victim", ip_address="10.0.0.1", failures_since_start=5,
                                           user_agent="x", http_accept="*/*", path_info="/admin/login/",
                                           get_data="", post_data="")
    if role != "anonymous":
        client.force_login(users[role])
    changelist = reverse("admin:axes_accessattempt_changelist")
    got = {
        "login": client.get(reverse("admin:login")).status_code,  # signed-in staff go on to the console
        "2fa": client.get(reverse("console-2fa")).status_code,
        "2fa_post": client.post(reverse("console-2fa"), {"code": "12"}).status_code,  # a bad code: the form again
        "lockouts": client.get(changelist).status_code,
    }
    client.post(changelist, {"action": "unlock", "_selected_action": [attempt.pk]})
    got["unlocked"] = not AccessAttempt.objects.filter(pk=attempt.pk).exists()
    assert got == expected


@pytest.mark.parametrize("role", ["staff", "support", "root"])
def test_with_two_factor_required_every_staff_role_enrols_before_the_console(client, users, settings, role):
    settings.STAFF_2FA = "required"
    client.force_login(users[role])
    for url in ("/admin/", reverse("admin:billing_console_customer_changelist"), reverse("console-search")):
        response = client.get(url)
        assert (response.status_code, response["Location"]) == (302, reverse("console-2fa")), url
    assert client.get(reverse("console-2fa")).status_code == 200
