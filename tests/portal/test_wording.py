"""Words customers read on the manage and deploy pages: true in each state, no dead ends, one spelling."""
import re
from pathlib import Path

import pytest
from django.utils import timezone

from deployments.models import BundleRelease
from tests.deployments.factories import DeploymentFactory

ROOT = Path(__file__).resolve().parents[2]


def _release(version="v1.0.0"):
    return BundleRelease.objects.create(version=version, bundle_url=f"http://bundles.invalid/{version}.js",
                                        sha256="0" * 64, size=1, last_seen_at=timezone.now())


@pytest.mark.django_db
def test_live_says_where_the_app_is_and_a_push_a_moment_ago_is_just_now(client, manage_url, bundles):
    _release()
    deployment = DeploymentFactory(current_version="v1.0.0", script_name="erin-app", last_push_at=timezone.now())
    deployment.status = deployment.derived_status()
    deployment.save()
    for page in ("", "deploy/"):
        body = client.get(manage_url(deployment.customer, page)).content.decode()
        assert "readiness-live" in body
        assert "running release v1.0.0" in body and "The app is at /app on the Worker&#x27;s address" in body
        assert "Workers &amp; Pages → erin-app" in body
        assert "Last update</dt><dd>just now</dd>" in body
        assert "0 minutes ago" not in body and "0\xa0minutes ago" not in body and "Visit /app" not in body


@pytest.mark.django_db
def test_an_older_push_keeps_its_age(client, manage_url, bundles):
    _release()
    deployment = DeploymentFactory(current_version="v1.0.0", last_push_at=timezone.now() - timezone.timedelta(hours=3))
    body = client.get(manage_url(deployment.customer, "deploy/")).content.decode()
    assert "Last update</dt><dd>3\xa0hours ago</dd>" in body


@pytest.mark.django_db
def test_almost_there_before_any_release_names_no_button_and_no_wrangler(client, manage_url, settings, bundles):
    bundles.unpublish_latest()
    deployment = DeploymentFactory()
    body = client.get(manage_url(deployment.customer, "deploy/")).content.decode()
    assert "Almost there" in body
    assert "we check for one every hour and push it to your Worker then. Nothing to do on your side." in body
    assert "wrangler" not in body and "Deploy to Cloudflare button" not in body


def test_customer_facing_templates_spell_licence_one_way():
    """British "licence" in every word a person reads; template variables (license.key) are code."""
    words = []
    for path in (ROOT / "templates").rglob("*"):
        if path.suffix not in (".html", ".txt"):
            continue
        text = re.sub(r"\{[{%#].*?[}%#]\}", " ", path.read_text(), flags=re.S)  # drop tags and variables
        words += [f"{path.relative_to(ROOT)}: {m}" for m in re.findall(r"\b[Ll]icense[sd]?\b", text)]
    assert words == []


@pytest.mark.django_db
def test_admin_messages_keep_ids_as_written(admin_client_):
    deployment = DeploymentFactory(script_name="my-worker")
    page = admin_client_.post("/admin/deployments/deployment/", {"action": "push_now", "_selected_action": [deployment.pk]},
                              follow=True).content.decode()
    assert f'class="error">my-worker ({deployment.account_id[:8]}): ' in page
    assert "My-worker" not in page
