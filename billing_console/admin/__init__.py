"""The support console (Django admin): base classes (base), the customer page and the core's history
pages (customers), invoices and reconciliation (invoicing), the front page dashboard, search and the
customer page's actions (console).

Django's autodiscover imports this package; importing the modules below registers their ModelAdmins.
"""
# cohorts after invoicing: its inline follows the invoices on the customer page.
from billing_console.admin import checkout, customers, invoicing, lifecycle, lockouts, cohorts, usage  # noqa: F401,I001  registers the ModelAdmins
