"""Mounted at /api/license/ by billing_console/urls.py."""
from django.urls import path

from licensing import api

app_name = "licensing"
urlpatterns = [
    path("activate", api.activate, name="activate"),
    path("deactivate", api.deactivate, name="deactivate"),
    path("status", api.status, name="status"),
    path("public-key", api.public_key, name="public-key"),
]
