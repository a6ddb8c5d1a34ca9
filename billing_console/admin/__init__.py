"""The support console (Django admin): base classes (base), the customer page and the core's history
pages (customers), invoices and reconciliation (invoicing), the front page dashboard, search and the
customer page's actions (console).

Django's autodiscover imports this package; importing the modules below registers their ModelAdmins.
"""
from billing_console.admin import customers, invoicing, usage  # noqa: F401  registers the ModelAdmins
