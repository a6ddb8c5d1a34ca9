from django.contrib import admin
from django.urls import include, path

from billing_console.admin import console as console_admin
from billing_console.ops import metrics
from billing_console.invoicing import api as invoicing_api
from billing_console.ops import summary as ops
from billing_console.ops import views
from billing_console.stripe import api
from billing_console.admin import staff_auth

admin.site.site_header = "Billing Console"
admin.site.site_title = "Billing Console"
admin.site.index_title = "Support console"
admin.site.login_form = staff_auth.StaffLoginForm  # password, then the two-factor code of staff who enrolled

urlpatterns = [
    path("health", views.health, name="health"),
    path("api/cloud/health", views.cloud_health_view, name="cloud-health"),
    path("api/ops/summary", ops.ops_summary_view, name="ops-summary"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("api/billing/checkout", api.checkout, name="billing-checkout"),
    path("api/billing/portal", api.portal, name="billing-portal"),
    path("api/billing/webhook", api.webhook, name="billing-webhook"),
    path("api/billing/usage", invoicing_api.usage, name="billing-usage"),
    path("api/license/", include("licensing.urls")),
    path("", include("deployments.urls")),
    path("", include("dunning.urls")),
    path("admin/2fa/", admin.site.admin_view(staff_auth.two_factor_view), name="console-2fa"),
    path("admin/search/", admin.site.admin_view(console_admin.search_view), name="console-search"),
    path("admin/customer-actions/<int:customer_id>/<str:app_label>/<str:model_name>/",
         admin.site.admin_view(console_admin.customer_action_view), name="console-customer-action"),
    path("admin/analytics/", include("billing_console.analytics.urls")),
    path("admin/", admin.site.urls),
    path("", include("billing_console.portal.urls")),
]
