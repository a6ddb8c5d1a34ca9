"""The console's URLs plus /bench/bare, a bare Django JSON view: the yardstick of the licence bench."""
from django.http import JsonResponse
from django.urls import path

from billing_console.urls import urlpatterns as console_urlpatterns


def bare(request):
    return JsonResponse({"ok": True})


urlpatterns = [path("bench/bare", bare), *console_urlpatterns]
