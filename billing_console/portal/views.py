"""Customer pages: pricing and checkout, the manage page behind a signed link, the deploy page, /recover.

Server-rendered, no JavaScript needed. Views parse the form, call one service (which audits with the
customer as actor), then redirect with a message (POST/redirect/GET) or re-render with field errors.
The manage pages read licences and deployments through those apps' models and services: this module is
the one place where the customer's view of every app is put together.
"""
from __future__ import annotations

import logging
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_q.tasks import async_task

from billing_console import ratelimit
from billing_console.errors import ServiceError
from billing_console.manage_links import ManageLinkInvalid, manage_link_read
from billing_console.models import AuditEvent, Customer
from billing_console.portal import selectors
from billing_console.selectors import customer_entitlement
from billing_console.phones import customer_change_phone, whatsapp_configured
from billing_console.portal.forms import CheckoutForm, DeploymentForm, PhoneForm, RecoverForm, TokenForm, add_service_errors
from billing_console.stripe import gateway as stripe_gateway
from billing_console.stripe.checkout import (CheckoutInputError, CheckoutStripeFailed, PlanNotAvailable, checkout_input_clean,
                                             checkout_rate_limit, checkout_start)
from billing_console.wording import counted
from billing_console.stripe.switch import CLOSED_MESSAGE, checkout_is_open

log = logging.getLogger("billing_console.pages")
CUSTOMER = AuditEvent.ActorType.CUSTOMER
PORTAL_RETURN_SESSION_KEY = "portal_return_manage_token"


def support_contact(request) -> dict:
    """Template context processor: the support inbox shown in the customer pages' footer."""
    return {"support_email": settings.SUPPORT_EMAIL}


def _see_other(url: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


# --- Pricing and checkout -------------------------------------------------------------------------
@require_safe
def pricing(request):
    return render(request, "pages/pricing.html", {"plans": selectors.pricing_plans(), "form": CheckoutForm(),
                                                  "sales_paused": not checkout_is_open()})


@never_cache
@require_POST
def checkout(request):
    """The pricing page's form: start a checkout with the same service as the API, then go to Stripe."""
    form = CheckoutForm(request.POST)
    error, status = "", 400
    wait = checkout_rate_limit(client=ratelimit.client_address(request), email=request.POST.get("email"))
    paused = not checkout_is_open()
    if paused:
        error, status = CLOSED_MESSAGE, 503
    elif wait:
        error, status = f"Too many checkout requests. Please try again in {counted(max(1, round(wait / 60)), 'minute')}.", 429
    elif form.is_valid():
        try:
            clean = checkout_input_clean({"email": form.cleaned_data["email"], "plan": form.cleaned_data["plan"]})
            _, url = checkout_start(**clean)
            return _see_other(url)
        except CheckoutInputError as exc:
            add_service_errors(form, exc)
        except PlanNotAvailable as exc:
            error, status = str(exc), 409
        except CheckoutStripeFailed as exc:
            error, status = f"Checkout could not be opened: {exc.message} Please try again in a minute.", 502
    context = {"plans": selectors.pricing_plans(), "form": form, "error": "" if paused else error,
               "chosen": request.POST.get("plan", ""), "sales_paused": paused}
    response = render(request, "pages/pricing.html", context, status=status)
    if wait:
        response["Retry-After"] = str(wait)
    return response


@require_safe
def checkout_success(request):
    return render(request, "pages/checkout_success.html", {"max_age_days": settings.MANAGE_LINK_MAX_AGE_DAYS})


@require_safe
def checkout_cancel(request):
    return render(request, "pages/checkout_cancel.html")


# --- Manage pages ---------------------------------------------------------------------------------
def manage_link_required(view):
    """Resolve /manage/<token>/ to the customer, or answer the invalid-link page (never a 500)."""

    @wraps(view)
    def wrapper(request, token, *args, **kwargs):
        try:
            customer = manage_link_read(token)
        except ManageLinkInvalid:
            return render(request, "pages/link_invalid.html", status=403)
        request.manage_token = token
        return view(request, customer, *args, **kwargs)

    return never_cache(wrapper)


def _actor(customer: Customer) -> dict:
    return {"actor_type": CUSTOMER, "actor": customer.email}


def _manage_url(request) -> str:
    return reverse("pages:manage", args=[request.manage_token])


def _render_manage(request, customer, *, status=200, token_forms=None, phone_form=None):
    context = selectors.manage_context(customer)
    context["whatsapp"] = whatsapp_configured()
    context["phone_form"] = phone_form or PhoneForm(initial={"phone": customer.phone,
                                                            "consent": bool(customer.phone_consent_at)})
    forms_by_id = token_forms or {}
    for row in context["deployments"]:
        row["token_form"] = forms_by_id.get(str(row["deployment"].pk)) or TokenForm(prefix=f"d{row['deployment'].pk.hex[:8]}")
    context["token"] = request.manage_token
    return render(request, "pages/manage.html", context, status=status)


@require_safe
@manage_link_required
def manage(request, customer):
    return _render_manage(request, customer)


@require_POST
@manage_link_required
def portal(request, customer):
    if not customer.stripe_customer_id:
        messages.error(request, "There is no billing account for you at Stripe yet. Please contact support.")
        return _see_other(_manage_url(request))
    # Stripe keeps the return URL in its logs and dashboards: it names no token, the browser's session
    # carries the link back (and a link revoked or expired meanwhile stays so).
    request.session[PORTAL_RETURN_SESSION_KEY] = request.manage_token
    try:
        session = stripe_gateway.portal_session_create(customer_id=customer.stripe_customer_id,
                                                       return_url=request.build_absolute_uri(reverse("pages:portal-return")))
    except stripe_gateway.StripeGatewayError as exc:
        messages.error(request, f"The billing portal could not be opened: {exc.message}")
        return _see_other(_manage_url(request))
    return _see_other(session["url"])


@never_cache
@require_safe
def portal_return(request):
    """Where the Stripe billing portal sends the customer back: to the manage page this browser came from."""
    token = request.session.get(PORTAL_RETURN_SESSION_KEY, "")
    try:
        manage_link_read(token)
    except ManageLinkInvalid:
        return render(request, "pages/link_invalid.html", status=403)
    return _see_other(reverse("pages:manage", args=[token]))


@require_POST
@manage_link_required
def phone(request, customer):
    """Add, change or remove the WhatsApp number; a number needs the consent box ticked."""
    form = PhoneForm(request.POST)
    if form.is_valid():
        try:
            updated = customer_change_phone(customer=customer, phone=form.cleaned_data["phone"],
                                            consent=form.cleaned_data["consent"], **_actor(customer))
        except ServiceError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Payment reminders will also reach {updated.phone} on WhatsApp." if updated.phone
                             else "Your phone number is removed; reminders come by email only.")
            return _see_other(_manage_url(request) + "#phone")
    return _render_manage(request, customer, status=400, phone_form=form)


@require_POST
@manage_link_required
def device_deactivate(request, customer, activation_id):
    from licensing.models import DeviceActivation
    from licensing.services import device_activation_deactivate

    activation = get_object_or_404(DeviceActivation, pk=activation_id, license__customer=customer)
    device_activation_deactivate(activation=activation, **_actor(customer))
    messages.success(request, f"{activation.name or activation.device_id} was deactivated. Its seat is free again.")
    return _see_other(_manage_url(request))


def _customer_deployment(customer, deployment_id):
    from deployments.models import Deployment

    return get_object_or_404(Deployment, pk=deployment_id, customer=customer)


@require_POST
@manage_link_required
def deployment_token(request, customer, deployment_id):
    from deployments.services import deployment_rotate_token

    deployment = _customer_deployment(customer, deployment_id)
    form = TokenForm(request.POST, prefix=f"d{deployment.pk.hex[:8]}")
    if form.is_valid():
        try:
            deployment_rotate_token(deployment=deployment, api_token=form.cleaned_data["api_token"], **_actor(customer))
        except ServiceError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Cloudflare accepted the new token. It is saved, and the next update uses it.")
            return _see_other(_manage_url(request))
    return _render_manage(request, customer, status=400, token_forms={str(deployment.pk): form})


@require_POST
@manage_link_required
def deployment_pause(request, customer, deployment_id):
    from deployments.models import Deployment
    from deployments.services import deployment_pause as pause

    deployment = _customer_deployment(customer, deployment_id)
    pause(deployment=deployment, reason="Paused by the customer", by=Deployment.PausedBy.CUSTOMER, **_actor(customer))
    messages.success(request, "Updates to your deployment are paused. Your Worker keeps running as it is.")
    return _see_other(_manage_url(request))


@require_POST
@manage_link_required
def deployment_resume(request, customer, deployment_id):
    from deployments.models import Deployment
    from deployments.services import deployment_resume as resume

    deployment = _customer_deployment(customer, deployment_id)
    try:
        resume(deployment=deployment, by=selectors.resume_origin(), **_actor(customer))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Updates are back on. The next hourly run brings your Worker up to date."
                         if customer_entitlement(customer).entitled else
                         "Your pause is lifted. Updates come back once the subscription gives access again.")
    return _see_other(_manage_url(request))


@require_http_methods(["GET", "HEAD", "POST"])
@manage_link_required
def deploy(request, customer):
    """The deploy page: connect a Cloudflare account (first time) and the readiness panel."""
    from deployments.services import deployment_create

    form = DeploymentForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                deployment_create(customer=customer, **form.cleaned_data, **_actor(customer))
            except ServiceError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, "Cloudflare accepted the token. Your deployment is set up.")
                return _see_other(reverse("pages:deploy", args=[request.manage_token]))
        status = 400
    context = {**selectors.deploy_context(customer), "form": form, "token": request.manage_token}
    return render(request, "pages/deploy.html", context, status=status)


# --- Recovery -------------------------------------------------------------------------------------
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def recover(request):
    """Email a fresh manage link. Same answer whether or not the address is known; rate limited per
    address and per client so it can be used neither to probe addresses nor to flood an inbox."""
    form = RecoverForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"].strip().lower()
        wait = ratelimit.hit(
            [(ratelimit.bucket("recover-client", ratelimit.client_address(request)), settings.RECOVER_RATE_LIMIT_PER_CLIENT),
             (ratelimit.bucket("recover-email", email), settings.RECOVER_RATE_LIMIT_PER_EMAIL)],
            window=settings.RECOVER_RATE_LIMIT_WINDOW_SECONDS)
        if wait:
            response = render(request, "pages/recover.html", {"form": form, "wait_minutes": max(1, round(wait / 60))},
                              status=429)
            response["Retry-After"] = str(wait)
            return response
        customer_id = Customer.objects.filter(email__iexact=email).values_list("pk", flat=True).first()
        if customer_id is not None:
            async_task("billing_console.stripe.tasks.customer_manage_link_send", customer_id, "recover")
        return _see_other(reverse("pages:recover") + "?sent=1")
    status = 400 if request.method == "POST" else 200
    return render(request, "pages/recover.html", {"form": form, "sent": request.GET.get("sent") == "1"}, status=status)

