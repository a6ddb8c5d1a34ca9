"""One module per Stripe resource family; each has `register(api)` (see ../README.md)."""
from . import (account, charges, checkout, coupons, customers, events, invoiceitems, invoices, meters,
               payment_intents, payment_methods, portal,
               products, setup_intents, subscription_schedules, subscriptions, tax_rates,
               test_clocks, webhook_endpoints)

FAMILIES = (account, test_clocks, products, customers, payment_methods, payment_intents, charges, setup_intents,
            checkout, portal, subscriptions, subscription_schedules, invoices, invoiceitems, coupons, tax_rates,
            meters, webhook_endpoints, events)
