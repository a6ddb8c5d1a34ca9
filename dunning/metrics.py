"""This app's /metrics families (registered from DunningConfig.ready()): one GROUP BY."""
from django.db.models import Count

from billing_console.ops.metrics import gauge
from dunning.models import DunningStepLog


def dunning_metrics():
    rows = DunningStepLog.objects.values_list("channel", "status").annotate(n=Count("pk")).order_by()
    return [gauge("billing_dunning_sends", "Dunning steps by channel and outcome.", ["channel", "outcome"], sorted(rows))]
