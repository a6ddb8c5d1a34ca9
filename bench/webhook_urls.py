"""Bench-only URLs: the console's routes plus the two baselines the webhook bench compares against,
on the same server in the same run. Never included by billing_console/urls.py."""
import json

from django.db import connection
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from djstripe.views import ProcessWebhookView

from billing_console.urls import urlpatterns as console_urlpatterns

INSERT_TABLE = "bench_insert"


@csrf_exempt
def bare_insert(request):
    """The floor of a webhook that stores its body: parse the JSON, insert it as one row, answer."""
    payload = json.loads(request.body)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {INSERT_TABLE} (payload) VALUES (%s::jsonb)", [json.dumps(payload)])
    return JsonResponse({"ok": True})


urlpatterns = [
    path("bench/insert", bare_insert),
    # dj-stripe 2.11's stock endpoint: verify, store, and process synchronously (re-reads the object).
    path("bench/djstripe/<uuid:uuid>/", ProcessWebhookView.as_view()),
    *console_urlpatterns,
]
