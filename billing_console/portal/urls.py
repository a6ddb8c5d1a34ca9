from django.urls import path

from billing_console.portal import views

app_name = "pages"
urlpatterns = [
    path("", views.pricing, name="pricing"),
    path("checkout", views.checkout, name="checkout"),
    path("checkout/success", views.checkout_success, name="checkout-success"),
    path("checkout/cancel", views.checkout_cancel, name="checkout-cancel"),
    path("recover", views.recover, name="recover"),
    path("billing/return", views.portal_return, name="portal-return"),
    path("manage/<str:token>/", views.manage, name="manage"),
    path("manage/<str:token>/portal", views.portal, name="portal"),
    path("manage/<str:token>/deploy/", views.deploy, name="deploy"),
    path("manage/<str:token>/phone", views.phone, name="phone"),
    path("manage/<str:token>/devices/<int:activation_id>/deactivate", views.device_deactivate, name="device-deactivate"),
    path("manage/<str:token>/deployments/<uuid:deployment_id>/token", views.deployment_token, name="deployment-token"),
    path("manage/<str:token>/deployments/<uuid:deployment_id>/pause", views.deployment_pause, name="deployment-pause"),
    path("manage/<str:token>/deployments/<uuid:deployment_id>/resume", views.deployment_resume, name="deployment-resume"),
]
