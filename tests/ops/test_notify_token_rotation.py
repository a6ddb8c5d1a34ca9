import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from billing_console.manage_links import manage_link_read
from billing_console.models import AuditEvent
from tests.core.factories import SubscribedCustomerFactory
from tests.deployments.factories import DeploymentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def holders():
    first, second = DeploymentFactory().customer, DeploymentFactory().customer
    DeploymentFactory(customer=first)  # two deployments: still one email
    SubscribedCustomerFactory(email="no-deployment@example.com")
    return first, second


def manage_link_in(message) -> str:
    return next(word for word in message.body.split() if "/manage/" in word).rsplit("/manage/", 1)[1].strip("/")


def test_every_customer_with_a_deployment_gets_one_email_with_a_working_manage_link(holders, capsys):
    call_command("notify_token_rotation")
    assert sorted(m.to[0] for m in mail.outbox) == sorted(c.email for c in holders)
    for message in mail.outbox:
        assert "rotate" in message.subject.lower() and "Rotate Cloudflare token" in message.body
        assert manage_link_read(manage_link_in(message)).email == message.to[0]
    assert "sent 2, already emailed 0, failed 0" in capsys.readouterr().out
    assert AuditEvent.objects.filter(action="customer.notice_sent").count() == 2


def test_running_it_again_emails_nobody_twice_but_a_new_master_key_starts_over(holders, settings):
    call_command("notify_token_rotation")
    call_command("notify_token_rotation")
    assert len(mail.outbox) == 2
    settings.CLOUD_MASTER_KEY = "a-new-master-key-after-the-leak-0001"
    call_command("notify_token_rotation")
    assert len(mail.outbox) == 4


def test_dry_run_counts_and_sends_nothing(holders, capsys):
    call_command("notify_token_rotation", dry_run=True)
    assert mail.outbox == [] and not AuditEvent.objects.exists()
    assert "2 would be emailed" in capsys.readouterr().out


def test_a_failed_send_is_reported_and_retried_by_the_next_run(holders, monkeypatch):
    from django.core.mail import EmailMultiAlternatives

    real_send = EmailMultiAlternatives.send
    monkeypatch.setattr(EmailMultiAlternatives, "send", lambda self, *a, **k: (_ for _ in ()).throw(OSError("smtp down")))
    with pytest.raises(CommandError, match="2 email"):
        call_command("notify_token_rotation")
    assert mail.outbox == []
    monkeypatch.setattr(EmailMultiAlternatives, "send", real_send)
    call_command("notify_token_rotation")
    assert len(mail.outbox) == 2


def test_without_a_master_key_it_refuses(holders, settings):
    settings.CLOUD_MASTER_KEY = ""
    with pytest.raises(CommandError, match="CLOUD_MASTER_KEY"):
        call_command("notify_token_rotation")
    assert mail.outbox == []
