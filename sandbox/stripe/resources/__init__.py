"""One module per Stripe resource family; each has `register(api)` (see ../README.md)."""
from . import (account, charges, checkout, customers, events, invoices, payment_intents, payment_methods, portal,
               products, setup_intents, subscriptions,
               test_clocks, webhook_endpoints)

FAMILIES = (account, test_clocks, products, customers, payment_methods, payment_intents, charges, setup_intents,
            checkout, portal, subscriptions, invoices,
            webhook_endpoints, events)
