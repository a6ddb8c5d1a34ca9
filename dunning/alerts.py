"""This app's alert_check providers (registered from DunningConfig.ready()): a spike of failed sends, and
the WhatsApp (Evolution) instance not connected."""
from datetime import timedelta

from django.conf import settings

from billing_console.ops.alerts import Problem
from dunning.channels import EvolutionClient
from dunning.models import DunningStepLog


def dunning_failure_problems(now):
    window = settings.ALERT_SPIKE_WINDOW_MINUTES
    failed = DunningStepLog.objects.filter(status=DunningStepLog.Status.FAILED,
                                           updated_at__gte=now - timedelta(minutes=window)).count()
    if failed >= settings.ALERT_DUNNING_FAILURES:
        return [Problem("dunning_failures_spike", f"{failed} dunning sends failed in the last {window} minutes.",
                        runbook="Dunning failures spike")]
    return []


def whatsapp_problems(now):
    """One GET to the Evolution API (its timeout bounds the check); nothing when WhatsApp is not configured."""
    with EvolutionClient() as client:
        if not client.configured:
            return []
        state = client.connection_state()
    if state != "open":
        return [Problem("whatsapp_unreachable", f"The WhatsApp instance {client.instance!r} is not connected "
                        f"(Evolution says {state}).", runbook="WhatsApp unreachable")]
    return []
