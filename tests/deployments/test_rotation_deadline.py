"""After notify_token_rotation, a deployment whose token is not rotated by TOKEN_ROTATION_DEADLINE_DAYS pauses
(ROTATION_OVERDUE) and resumes when the customer rotates; the email names the date; the dashboard counts them."""
from datetime import timedelta

import pytest
from django.core import mail
from billing_console.errors import ServiceError
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from billing_console.models import AuditEvent
from deployments import tasks
from deployments.models import Deployment
from deployments.rotation import deployments_enforce_rotation_deadline
from deployments.services import deployment_pause, deployment_resume, deployment_rotate_token, deployment_verify_token

pytestmark = pytest.mark.django_db
NEW_TOKEN = "rotatedToken_" + "R" * 30
P = Deployment.PausedBy


def test_the_email_states_the_real_date_and_the_deadline_is_recorded(settings, make_deployment):
    settings.TOKEN_ROTATION_DEADLINE_DAYS = 10
    deployment = make_deployment()
    call_command("notify_token_rotation")
    deployment.refresh_from_db()
    due = deployment.rotation_due_at
    assert due and abs((due - timezone.now()) - timedelta(days=10)) < timedelta(minutes=1)
    body = mail.outbox[0].body
    assert f"{due:%-d %B %Y}" in body and "within 7 days" not in body and "may pause" not in body
    assert AuditEvent.objects.get(action="deployment.rotation_requested").data["due_at"] == due.isoformat()


def test_overdue_deployments_pause_with_their_own_reason_and_rotation_resumes_them(cloudflare, make_deployment):
    late, on_time = make_deployment(), make_deployment()
    call_command("notify_token_rotation")
    cloudflare.add_token(NEW_TOKEN, on_time.account_id)
    deployment_rotate_token(deployment=on_time, api_token=NEW_TOKEN, actor_type="customer", actor="c")
    assert deployments_enforce_rotation_deadline()["paused"] == 0  # not due yet

    counts = deployments_enforce_rotation_deadline(now=timezone.now() + timedelta(days=8))
    assert counts == {"paused": 1, "pending": 1}
    late.refresh_from_db()
    on_time.refresh_from_db()
    assert late.paused and late.paused_by == P.ROTATION_OVERDUE and late.status == Deployment.Status.PAUSED
    assert "not rotated by" in late.paused_reason
    assert not on_time.paused and on_time.rotation_due_at is None

    # Neither a manual resume nor verifying the old token lifts it; a new token does.
    with pytest.raises(ServiceError, match="rotating the token resumes it"):
        deployment_resume(deployment=late, actor_type="customer", actor="c")
    deployment_verify_token(deployment=late, actor_type="admin", actor="sam")
    late.refresh_from_db()
    assert late.paused_by == P.ROTATION_OVERDUE
    cloudflare.add_token(NEW_TOKEN + "x", late.account_id)
    deployment_rotate_token(deployment=late, api_token=NEW_TOKEN + "x", actor_type="customer", actor="c")
    late.refresh_from_db()
    assert not late.paused and late.rotation_due_at is None
    assert AuditEvent.objects.filter(action="deployment.token_rotated", target_id=str(late.pk)).get().data["resumed_from"] == P.ROTATION_OVERDUE


def test_a_manual_pause_is_kept_and_a_token_set_after_the_notice_gets_no_deadline(make_deployment):
    paused = make_deployment()
    deployment_pause(deployment=paused, actor_type="admin", actor="sam", reason="support")
    fresh = make_deployment()
    Deployment.objects.filter(pk=fresh.pk).update(token_set_at=timezone.now() + timedelta(minutes=5))
    call_command("notify_token_rotation")
    assert list(Deployment.objects.filter(rotation_due_at__isnull=False).values_list("pk", flat=True)) == [paused.pk]
    deployments_enforce_rotation_deadline(now=timezone.now() + timedelta(days=8))
    paused.refresh_from_db()
    assert paused.paused_by == P.MANUAL  # an automatic pause never replaces a manual one


def test_the_schedule_runs_it_and_the_unknown_pause_origin_is_refused(make_deployment):
    deployment = make_deployment(rotation_due_at=timezone.now() - timedelta(minutes=1))
    assert tasks.enforce_token_rotation() == {"paused": 1, "pending": 1}
    deployment.refresh_from_db()
    assert deployment.paused_by == P.ROTATION_OVERDUE
    with pytest.raises(ServiceError):
        deployment_pause(deployment=deployment, actor_type="admin", actor="sam", by="nonsense")


def test_the_dashboard_counts_who_is_still_pending(admin_client, make_deployment):
    make_deployment(rotation_due_at=timezone.now() + timedelta(days=3))
    make_deployment()
    body = admin_client.get(reverse("admin:index")).content.decode()
    assert "Token rotation pending" in body
    listing = admin_client.get(reverse("admin:deployments_deployment_changelist") + "?push=rotation")
    assert listing.status_code == 200 and len(listing.context["cl"].result_list) == 1


def test_the_manage_page_names_the_deadline_then_the_pause(client, make_deployment):
    from billing_console.manage_links import manage_link_token

    due = timezone.now() + timedelta(days=2)
    deployment = make_deployment(rotation_due_at=due)
    url = f"/manage/{manage_link_token(deployment.customer)}/"
    assert f"rotate your Cloudflare API token by <strong>{due:%-d %B %Y, %H:%M} UTC" in client.get(url).content.decode()
    deployments_enforce_rotation_deadline(now=due + timedelta(minutes=1))
    body = client.get(url).content.decode()
    assert "Updates stopped because the Cloudflare API token was not rotated by its deadline" in body
