"""Two workers running the dunning task at the same moment (threads, each with its own PostgreSQL
connection): every due step is sent exactly once."""
import threading
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection, connections

from dunning.channels import EmailSender
from dunning.models import DunningStepLog
from dunning.sending import dunning_run
from tests.dunning.factories import DunningCaseFactory, DunningPolicyFactory, DunningStepFactory, DunningStepLogFactory

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")


def run_in_threads(fn, n=2):
    barrier = threading.Barrier(n)
    errors = []

    def worker():
        try:
            barrier.wait()
            fn()
        except Exception as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors


@pytest.fixture
def slow_sends(monkeypatch):
    """Make each send take a little while, so the two workers overlap; count sends per recipient."""
    sent = []
    original = EmailSender.send

    def send(self, message):
        time.sleep(0.005)
        sent.append(message.to)
        return original(self, message)

    monkeypatch.setattr(EmailSender, "send", send)
    return sent


# Committed data that other connections see; flushing only these apps' tables (with CASCADE) afterwards
# is seconds faster than flushing every table, dj-stripe's included.
@pytest.mark.django_db(transaction=True, available_apps=["django.contrib.contenttypes", "django.contrib.auth",
                                                         "billing_console", "dunning"])
def test_two_workers_queue_and_send_each_step_once(t0, settings, slow_sends):
    settings.DUNNING_BATCH_SIZE = 7
    policy = DunningPolicyFactory()
    DunningStepFactory(policy=policy, code="D+1", offset_days=1)
    DunningStepFactory(policy=policy, code="D+2", offset_days=2)
    for _ in range(30):
        DunningCaseFactory(policy=policy, opened_at=t0, next_step_at=t0 + timedelta(days=1))
    # Steps already queued (by webhooks) that both workers see at once.
    queued = [DunningStepLogFactory(case=DunningCaseFactory(policy=policy, opened_at=t0, next_step_at=None),
                                    step_code="D+1", due_at=t0) for _ in range(20)]

    for day in (1, 2):
        run_in_threads(lambda: dunning_run(now=t0 + timedelta(days=day, minutes=1)))

    assert DunningStepLog.objects.count() == 80
    assert DunningStepLog.objects.filter(status="sent", attempts=1).count() == 80
    assert len(slow_sends) == 80 and len(mail.outbox) == 80
    per_recipient = {email: slow_sends.count(email) for email in set(slow_sends)}
    assert set(per_recipient.values()) == {1, 2} and len(per_recipient) == 50
    assert all(per_recipient[row.case.customer.email] == 1 for row in queued)
