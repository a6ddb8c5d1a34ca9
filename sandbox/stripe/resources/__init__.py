"""One module per Stripe resource family; each has `register(api)` (see ../README.md)."""
from . import (account, checkout, customers, events, invoices, payment_methods, portal, products, subscriptions,
               webhook_endpoints)

FAMILIES = (account, products, customers, payment_methods, checkout, portal, subscriptions, invoices,
            webhook_endpoints, events)
