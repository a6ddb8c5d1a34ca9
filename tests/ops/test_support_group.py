import pytest
from django.contrib.auth.models import Permission

from billing_console.ops.support import CONSOLE_APPS, SUPPORT_GROUP, SUPPORT_VIEWS, support_group_ensure
from tests.core.factories import SubscribedCustomerFactory

pytestmark = pytest.mark.django_db


def _codes(group):
    return set(group.permissions.values_list("content_type__app_label", "codename"))


def test_group_has_view_on_console_models_and_change_only_where_support_acts():
    group = support_group_ensure()
    codes = _codes(group)
    assert group.name == SUPPORT_GROUP
    assert ("billing_console", "view_customer") in codes
    assert ("billing_console", "change_customer") in codes
    assert ("billing_console", "view_auditevent") in codes
    assert ("billing_console", "change_auditevent") not in codes
    assert ("axes", "view_accessattempt") in codes  # the staff login lockouts, to look at
    outside = {(app, c) for app, c in codes if app not in CONSOLE_APPS}
    assert outside == {(app, f"view_{m}") for app, models in SUPPORT_VIEWS.items() for m in models}
    assert not [c for _, c in codes if c.startswith(("add_", "delete_"))]


def test_ensure_is_idempotent_and_takes_back_extra_powers():
    group = support_group_ensure()
    before = _codes(group)
    group.permissions.add(Permission.objects.get(codename="delete_user"))
    group = support_group_ensure()
    assert _codes(group) == before
    assert support_group_ensure().pk == group.pk


def test_support_user_sees_customers_but_not_users_groups_or_stripe_keys(support_client):
    assert support_client.get("/admin/").status_code == 200
    assert support_client.get("/admin/billing_console/customer/").status_code == 200
    assert support_client.get("/admin/billing_console/auditevent/").status_code == 200
    assert support_client.get("/admin/billing_console/cronrun/").status_code == 200
    assert support_client.get("/admin/auth/user/").status_code == 403
    assert support_client.get("/admin/auth/group/").status_code == 403
    assert support_client.get("/admin/djstripe/apikey/").status_code in (403, 404)
    assert support_client.get("/admin/django_q/schedule/").status_code in (403, 404)


def test_support_user_can_correct_a_customer_but_not_delete_one(support_client):
    customer = SubscribedCustomerFactory(phone="")
    page = support_client.get(f"/admin/billing_console/customer/{customer.pk}/change/")
    assert page.status_code == 200
    assert support_client.post(f"/admin/billing_console/customer/{customer.pk}/delete/", {"post": "yes"}).status_code == 403
    customer.refresh_from_db()
    assert customer.pk


def test_support_user_is_not_a_superuser(support_user):
    assert not support_user.is_superuser
    assert not support_user.has_perm("auth.change_user")
    assert not support_user.has_perm("auth.change_group")
    assert not support_user.has_perm("djstripe.view_apikey")
