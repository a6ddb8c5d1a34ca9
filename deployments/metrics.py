"""This app's /metrics families (registered from DeploymentsConfig.ready()): one GROUP BY."""
from django.db.models import Count

from billing_console.ops.metrics import gauge
from deployments.models import PublishVersion


def push_metrics():
    rows = PublishVersion.objects.values_list("status").annotate(n=Count("pk")).order_by()
    return [gauge("billing_pushes", "Deployment pushes (publish versions) by outcome.", ["outcome"], sorted(rows))]
