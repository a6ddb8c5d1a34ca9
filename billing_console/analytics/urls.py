from django.contrib import admin
from django.urls import path

from billing_console.analytics import views

urlpatterns = [
    path("", admin.site.admin_view(views.analytics_view), name="console-analytics"),
    path("<slug:slug>.csv", admin.site.admin_view(views.analytics_csv_view), name="console-analytics-csv"),
]
