"""The emulator's hosted pages: Checkout, the customer portal, invoices (HTML and PDF), and a read-only
dashboard page per customer and subscription (what the console's "in Stripe" links open in sandbox mode).

Plain HTML forms that work without JavaScript. Called with the emulator's lock held; `emu` is the
running emulator (its store, clock and event emitter), passed in, never imported.
"""
from __future__ import annotations

import html
import json
import re
import time
from urllib.parse import urlsplit

from .._http import Request, Response
from .cards import DECLINE_MESSAGES, TEST_CARDS, card_digits
from .resources import (checkout as checkout_family, invoices as invoice_family, payment_intents, payment_methods,
                        portal as portal_family, subscriptions)

STYLE = """
*{box-sizing:border-box}body{margin:0;font:16px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,
Helvetica,Arial,sans-serif;color:#1a1f36;background:#f6f9fc}main{max-width:980px;margin:0 auto;padding:32px 20px;
display:grid;gap:32px;grid-template-columns:1fr}@media(min-width:800px){main.split{grid-template-columns:1fr 1fr}}
.card{background:#fff;border-radius:10px;box-shadow:0 2px 8px rgba(50,50,93,.1);padding:28px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 12px}.muted{color:#697386;font-size:14px}
.amount{font-size:34px;font-weight:600;margin:8px 0}label{display:block;font-size:14px;color:#3c4257;margin:14px 0 4px}
input{width:100%;padding:10px 12px;border:1px solid #d5dbe1;border-radius:6px;font-size:16px}
input:focus{outline:2px solid #635bff;border-color:#635bff}.row{display:flex;gap:12px}.row>div{flex:1}
button,.button{display:inline-block;margin-top:20px;width:100%;padding:12px;border:0;border-radius:6px;
background:#635bff;color:#fff;font-size:16px;font-weight:600;cursor:pointer;text-align:center;text-decoration:none}
button.secondary{background:#fff;color:#1a1f36;border:1px solid #d5dbe1}button.danger{background:#df1b41}
.error{background:#fde8ec;color:#a41c3a;border-radius:6px;padding:10px 12px;margin-top:14px}
.badge{display:inline-block;font-size:12px;font-weight:600;border-radius:4px;padding:2px 8px;background:#e3e8ee}
.badge.ok{background:#d7f7c2;color:#05690d}.badge.warn{background:#fcedb9;color:#a82c00}
.badge.bad{background:#ffe7f2;color:#b3093c}table{width:100%;border-collapse:collapse;font-size:14px}
td,th{padding:8px 4px;border-bottom:1px solid #e3e8ee;text-align:left}a{color:#635bff}
.sandbox{background:#fff4d6;color:#8a5a00;text-align:center;font-size:13px;padding:6px}
.hint{font-size:13px;color:#697386;margin-top:10px}
"""


def money(amount: int, currency: str) -> str:
    if amount < 0:
        return "-" + money(-amount, currency)
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency, "")
    text = f"{amount / 100:,.2f}"
    return f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"


def date(timestamp: int | None) -> str:
    return time.strftime("%b %d, %Y", time.gmtime(timestamp)) if timestamp else "—"


def page(title: str, body: str, status: int = 200, split: bool = False) -> Response:
    document = (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
                f"<meta name=viewport content='width=device-width,initial-scale=1'>"
                f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
                f"<div class=sandbox>Stripe sandbox — test mode, no real money moves</div>"
                f"<main class='{'split' if split else ''}'>{body}</main></body></html>")
    return Response(status, document)


def redirect(location: str) -> Response:
    return Response(303, b"", {"Location": location}, content_type="text/plain")


def not_found(what: str) -> Response:
    return page("Not found", f"<div class=card><h1>Not found</h1><p class=muted>{html.escape(what)}</p></div>", 404)


def e(value) -> str:
    return html.escape("" if value is None else str(value))


def field(form: dict, name: str) -> str:
    value = form.get(name, "")
    return (value[0] if isinstance(value, list) else value).strip()


def status_badge(status: str) -> str:
    tone = {"active": "ok", "paid": "ok", "trialing": "ok", "past_due": "warn", "open": "warn",
            "canceled": "bad", "uncollectible": "bad", "unpaid": "bad"}.get(status, "")
    return f"<span class='badge {tone}'>{e(status.replace('_', ' '))}</span>"


def card_inputs(email: str | None = None, email_locked: bool = False, with_email: bool = True) -> str:
    parts = []
    if with_email:
        readonly = " readonly" if email_locked else ""
        parts.append(f"<label for=email>Email</label><input id=email name=email type=email required "
                     f"autocomplete=email value='{e(email)}'{readonly}>")
    parts.append(
        "<label for=card>Card number</label><input id=card name=card inputmode=numeric required "
        "autocomplete=cc-number placeholder='4242 4242 4242 4242'>"
        "<div class=row><div><label for=exp>Expiry</label><input id=exp name=exp placeholder='MM / YY' "
        "autocomplete=cc-exp value='12 / 34'></div><div><label for=cvc>CVC</label><input id=cvc name=cvc "
        "placeholder=CVC autocomplete=cc-csc value=123></div></div>"
        "<label for=name>Name on card</label><input id=name name=name autocomplete=cc-name>")
    return "".join(parts)


DEMO_PHONE = "+15555550123"  # prefilled when Checkout collects a phone: dunning's WhatsApp steps reach the inbox
TEST_CARD_HINT = ("<p class=hint>Test cards: 4242 4242 4242 4242 pays; 4000 0000 0000 0341 is declined. "
                  "Any expiry in the future and any CVC.</p>")


# -- routing -------------------------------------------------------------------------------------
def route(emu, request: Request) -> Response:
    path = request.path.rstrip("/") or "/"
    if path == "/" and request.method == "GET":
        return index(emu)
    match = re.fullmatch(r"/checkout/([^/]+)", path)
    if match:
        return checkout(emu, request, match.group(1))
    match = re.fullmatch(r"/portal/([^/]+)", path)
    if match:
        return portal(emu, request, match.group(1))
    match = re.fullmatch(r"/invoices/([^/]+)(/pdf)?", path)
    if match:
        if match.group(2):
            return invoice_pdf(emu, match.group(1))
        return hosted_invoice(emu, request, match.group(1))
    match = re.fullmatch(r"/dashboard/(customers|subscriptions)/([^/]+)", path)
    if match and request.method in ("GET", "HEAD"):
        return dashboard_object(emu, match.group(1), match.group(2))
    return Response(404, {"error": {"type": "invalid_request_error", "message": (
        f"Unrecognized request URL ({request.method}: {request.path}). Please see https://stripe.com/docs "
        "or we can help at https://support.stripe.com/.")}})


def index(emu) -> Response:
    prices = "".join(
        f"<tr><td><code>{e(p['id'])}</code></td><td>{e(emu.store.objects[p['product']]['name'])}</td>"
        f"<td>{money(p['unit_amount'], p['currency'])} / {e((p['recurring'] or {}).get('interval', 'once'))}</td></tr>"
        for p in emu.store.newest_first("price"))
    clock = emu.clock_state()
    return page("Stripe sandbox", f"""<div class=card><h1>Stripe sandbox</h1>
<p class=muted>API base: <code>{e(emu.url)}</code> · clock {e(clock['iso'])} · {len(emu.eventlog.events)} events ·
webhook {e(emu.webhook_state()['url'] or 'not configured')}</p><h2>Prices</h2><table>{prices}</table></div>""")


DASHBOARD_KINDS = {"customers": "customer", "subscriptions": "subscription"}


def _cell(emu, value) -> str:
    """One field's value: ids of objects the sandbox has link to their page, nested values as compact JSON."""
    if isinstance(value, str) and value in emu.store.objects:
        kind = emu.store.objects[value].get("object")
        plural = {v: k for k, v in DASHBOARD_KINDS.items()}.get(kind)
        if plural:
            return f"<a href='/dashboard/{plural}/{e(value)}'><code>{e(value)}</code></a>"
        if kind == "invoice":
            return f"<a href='/invoices/{e(value)}'><code>{e(value)}</code></a>"
    if isinstance(value, (dict, list)):
        return f"<code>{e(json.dumps(value, separators=(', ', ': '), default=str)[:600])}</code>"
    if value is None or value == "":
        return "<span class=muted>—</span>"
    return e(value)


def dashboard_object(emu, plural: str, object_id: str) -> Response:
    """A customer or subscription as a table of its fields (read-only), with the customer's subscriptions
    and invoices below it."""
    obj = emu.store.objects.get(object_id)
    kind = DASHBOARD_KINDS[plural]
    if not obj or obj.get("object") != kind:
        return not_found(f"No such {kind}: {object_id}")
    rows = "".join(f"<tr><th>{e(key)}</th><td>{_cell(emu, value)}</td></tr>" for key, value in obj.items()
                   if key != "object")
    related = ""
    if kind == "customer":
        subs = [x for x in emu.store.newest_first("subscription") if x.get("customer") == object_id]
        invoices = [x for x in emu.store.newest_first("invoice") if x.get("customer") == object_id]
        related = (
            "<div class=card id=subscriptions><h2>Subscriptions</h2><table>"
            + "".join(f"<tr><td>{_cell(emu, x['id'])}</td><td>{status_badge(x.get('status') or '')}</td>"
                      f"<td>until {date(x.get('current_period_end') or (x.get('items', {}).get('data') or [{}])[0].get('current_period_end'))}</td></tr>"
                      for x in subs)
            + "</table></div><div class=card id=invoices><h2>Invoices</h2><table>"
            + "".join(f"<tr><td>{_cell(emu, x['id'])}</td><td>{e(x.get('number') or '')}</td>"
                      f"<td>{status_badge(x.get('status') or '')}</td><td>{money(x.get('total') or 0, x.get('currency') or 'usd')}</td>"
                      f"<td>{date(x.get('created'))}</td></tr>" for x in invoices)
            + "</table></div>")
    title = obj.get("email") or obj.get("name") or object_id if kind == "customer" else object_id
    body = (f"<div class=card><p class=muted>{e(kind.capitalize())} · read-only</p><h1>{e(title)}</h1>"
            f"<table>{rows}</table></div>{related}")
    return page(f"{kind.capitalize()} {object_id}", body)


def _line_summary(emu, session_id: str) -> str:
    rows = []
    for item in emu.store.table(checkout_family.LINE_ITEMS).get(session_id, []):
        interval = (item["price"].get("recurring") or {}).get("interval")
        rows.append(f"<tr><td>{e(item['description'])} × {item['quantity']}</td>"
                    f"<td style='text-align:right'>{money(item['amount_total'], item['currency'])}"
                    f"{' / ' + e(interval) if interval else ''}</td></tr>")
    return "".join(rows)


def checkout(emu, request: Request, session_id: str) -> Response:
    session = emu.store.objects.get(session_id)
    if not session or session.get("object") != "checkout.session":
        return not_found("This Checkout Session does not exist.")
    error = None
    form = {}
    if request.method == "POST":
        form = request.form()
        result = checkout_family.pay_checkout(emu, session_id, field(form, "card"), field(form, "email"),
                                              field(form, "name"), phone=field(form, "phone"),
                                              promotion_code=field(form, "promotion_code"))
        if result["ok"]:
            return redirect(result["redirect"])
        error = result["error"]
    if session["status"] != "open":
        message = ("This payment is complete." if session["status"] == "complete"
                   else "This Checkout Session has expired.")
        link = session["success_url"] if session["status"] == "complete" else session["cancel_url"]
        link = (link or "").replace("{CHECKOUT_SESSION_ID}", session_id)
        back = f"<a class=button href='{e(link)}'>Continue</a>" if link else ""
        return page("Checkout", f"<div class=card><h1>{e(message)}</h1>{back}</div>",
                    410 if session["status"] == "expired" else 200)
    customer = emu.store.objects.get(session["customer"]) if session["customer"] else None
    email = (customer or {}).get("email") or field(form, "email") or session["customer_email"]
    merchant = emu.account["settings"]["dashboard"]["display_name"]
    lines = emu.store.table(checkout_family.LINE_ITEMS)[session_id]
    interval = next(((i["price"].get("recurring") or {}).get("interval") for i in lines
                     if i["price"].get("recurring")), None)
    trial_days = emu.store.table(checkout_family.SUBSCRIPTION_DATA)[session_id].get("trial_period_days")
    shop = urlsplit(session["cancel_url"] or "").netloc or "the shop"
    cancel = (f"<p><a href='{e(session['cancel_url'])}'>← Back to {e(shop)}</a></p>"
              if session["cancel_url"] else "")
    error_html = f"<div class=error role=alert>{e(error)}</div>" if error else ""
    extra = ""
    if session["phone_number_collection"]["enabled"]:
        phone = field(form, "phone") if request.method == "POST" else DEMO_PHONE
        extra += (f"<label for=phone>Phone number</label><input id=phone name=phone type=tel required "
                  f"autocomplete=tel value='{e(phone)}'><p class=hint>A demo number, so the WhatsApp reminders "
                  f"show in the sandbox inbox.</p>")
    if session["allow_promotion_codes"]:
        extra += (f"<label for=promotion_code>Promotion code</label><input id=promotion_code name=promotion_code "
                  f"value='{e(field(form, 'promotion_code'))}'>")
    if session["mode"] == "setup":
        heading, price_html, button = "Save a card with", "<p class=muted>No payment now.</p>", "Save card"
    else:
        per = f"<span class=muted>per {e(interval)}</span>" if interval else ""
        trial = f"<p class=muted>{trial_days} days free, then</p>" if trial_days else ""
        discount = session["total_details"]["amount_discount"]
        saved = (f"<p class=muted>Discount −{money(discount, session['currency'])}</p>" if discount else "")
        heading = "Subscribe to" if session["mode"] == "subscription" else "Pay"
        price_html = (f"{trial}<div class=amount>{money(session['amount_total'], session['currency'])} {per}</div>"
                      f"{saved}<table>{_line_summary(emu, session_id)}</table>")
        button = ("Start trial" if trial_days else "Subscribe") if session["mode"] == "subscription" else "Pay"
    body = f"""<div class=card>{cancel}<p class=muted>{e(heading)}</p><h1>{e(merchant)}</h1>
{price_html}</div>
<form class=card method=post action='/checkout/{e(session_id)}'><h2>Pay with card</h2>
{card_inputs(email, email_locked=customer is not None)}{extra}{error_html}
<button type=submit>{e(button)}</button>{TEST_CARD_HINT}</form>"""
    return page(f"Checkout · {merchant}", body, split=True)


def portal(emu, request: Request, session_id: str) -> Response:
    session = emu.store.objects.get(session_id)
    if not session or session.get("object") != "billing_portal.session":
        return not_found("This portal session does not exist.")
    customer = emu.store.objects.get(session["customer"])
    if not customer or customer.get("deleted"):
        return not_found("This customer no longer exists.")
    error = notice = None
    configuration = emu.store.objects.get(session["configuration"]) or portal_family.default_configuration(emu)
    features = configuration["features"]
    can_cancel = features["subscription_cancel"]["enabled"]
    cancel_now = features["subscription_cancel"]["mode"] == "immediately"
    can_update_card = features["payment_method_update"]["enabled"]
    if request.method == "POST":
        form = request.form()
        action, sub_id = field(form, "action"), field(form, "subscription")
        sub = emu.store.objects.get(sub_id)
        if action in ("cancel", "renew") and (not sub or sub.get("customer") != customer["id"]
                                             or sub["status"] == "canceled" or not can_cancel):
            error = "That subscription cannot be changed here."
        elif action == "card" and not can_update_card:
            error = "Payment methods cannot be changed here."
        elif action == "cancel" and cancel_now:
            subscriptions.cancel_subscription(emu, sub, reason="cancellation_requested")
            notice = "Your subscription has been canceled."
        elif action == "cancel":
            previous = subscriptions.schedule_cancel(emu, sub, True)
            if previous:
                emu.emit("customer.subscription.updated", sub, previous)
            notice = f"Your subscription will end on {date(sub['current_period_end'])}."
        elif action == "renew":
            previous = subscriptions.schedule_cancel(emu, sub, False)
            if previous:
                emu.emit("customer.subscription.updated", sub, previous)
            notice = "Your subscription will renew."
        elif action == "card":
            number = card_digits(field(form, "card"))
            if number not in TEST_CARDS:
                error = "Your card number is incorrect."
            else:
                pm = payment_methods.attach_card(emu, customer, number, email=customer["email"],
                                                 name=field(form, "name") or None)
                payment_methods.set_default_payment_method(emu, customer, pm["id"])
                emu.store.table(payment_methods.CHARGES_SUCCEED).pop(customer["id"], None)
                notice = f"Card ending in {number[-4:]} is now your default payment method."
                # Stripe's portal pays a past-due invoice with the new card right away.
                for iid in emu.store.ids["invoice"]:
                    invoice = emu.store.objects[iid]
                    if invoice["customer"] == customer["id"] and invoice["status"] == "open":
                        payment_intents.customer_present(emu, pm["id"])
                        ok, _ = invoice_family.attempt_invoice(emu, invoice, pm["id"])
                        if not ok:
                            invoice_family.record_failure(emu, invoice)
        else:
            error = "Unknown action."
    subs = [s for s in emu.store.newest_first("subscription") if s["customer"] == customer["id"]]
    sub_rows = []
    for sub in subs:
        item = sub["items"]["data"][0]
        product = emu.store.objects.get(item["price"]["product"], {})
        if sub["status"] in ("canceled", "incomplete_expired"):
            when, button = f"Ended {date(sub['ended_at'])}", ""
        elif not can_cancel:
            when, button = f"Renews {date(sub['current_period_end'])}", ""
        elif sub["cancel_at_period_end"]:
            when = f"Cancels {date(sub['current_period_end'])}"
            button = _portal_button(session_id, "renew", sub["id"], "Renew subscription", "secondary")
        else:
            when = f"Renews {date(sub['current_period_end'])}"
            button = _portal_button(session_id, "cancel", sub["id"], "Cancel subscription", "danger")
        sub_rows.append(f"<div style='margin-bottom:18px'><h2>{e(product.get('name', 'Subscription'))} "
                        f"{status_badge(sub['status'])}</h2>"
                        f"<div>{money(item['price']['unit_amount'], item['price']['currency'])}"
                        f" per {e(item['price']['recurring']['interval'])} · <span class=muted>{e(when)}</span></div>"
                        f"{button}</div>")
    pm_id = customer["invoice_settings"]["default_payment_method"]
    pm = emu.store.objects.get(pm_id) if pm_id else None
    card = f"{e(pm['card']['brand']).title()} ending in {e(pm['card']['last4'])}" if pm else "No card on file"
    invoices = [i for i in emu.store.newest_first("invoice")
                if i["customer"] == customer["id"] and i["status"] != "draft"]
    invoice_rows = "".join(
        f"<tr><td>{date(i['created'])}</td><td>{money(i['total'], i['currency'])}</td>"
        f"<td>{status_badge(i['status'])}</td>"
        f"<td><a href='{e(i['hosted_invoice_url'])}'>View</a></td></tr>" for i in invoices)
    back = (f"<p><a href='{e(session['return_url'])}'>← Return to {e(urlsplit(session['return_url']).netloc)}</a></p>"
            if session["return_url"] else "")
    messages = (f"<div class=error role=alert>{e(error)}</div>" if error else "") + \
               (f"<div class='badge ok' role=status style='display:block;padding:10px'>{e(notice)}</div>"
                if notice else "")
    card_form = (f"""<form class=card method=post action='/portal/{e(session_id)}'><h2>Payment method</h2><p>{card}</p>
<input type=hidden name=action value=card>{card_inputs(with_email=False)}
<button type=submit class=secondary>Update card</button>{TEST_CARD_HINT}</form>""" if can_update_card else
                 f"<div class=card><h2>Payment method</h2><p>{card}</p></div>")
    history = (f"<div class=card><h2>Invoice history</h2><table>"
               f"{invoice_rows or '<tr><td>No invoices yet.</td></tr>'}</table></div>"
               if features["invoice_history"]["enabled"] else "")
    body = f"""<div class=card>{back}<h1>{e(emu.account['settings']['dashboard']['display_name'])}</h1>
<p class=muted>{e(customer['email'])}</p>{messages}</div>
<div class=card><h2 class=muted>Current subscription</h2>{''.join(sub_rows) or '<p>No subscriptions.</p>'}</div>
{card_form}{history}"""
    return page("Billing portal", body)


def _portal_button(session_id: str, action: str, sub_id: str, label: str, tone: str) -> str:
    return (f"<form method=post action='/portal/{e(session_id)}'><input type=hidden name=action value={action}>"
            f"<input type=hidden name=subscription value='{e(sub_id)}'>"
            f"<button type=submit class={tone}>{e(label)}</button></form>")


def hosted_invoice(emu, request: Request, invoice_id: str) -> Response:
    invoice = emu.store.objects.get(invoice_id)
    if not invoice or invoice.get("object") != "invoice" or invoice["status"] == "draft":
        return not_found("This invoice does not exist.")
    error = None
    if request.method == "POST" and invoice["status"] in ("open", "uncollectible"):
        number = card_digits(field(request.form(), "card"))
        if number not in TEST_CARDS:
            error = "Your card number is incorrect."
        else:
            customer = emu.store.objects[invoice["customer"]]
            pm = payment_methods.attach_card(emu, customer, number, email=customer["email"])
            emu.store.table(payment_methods.CHARGES_SUCCEED).pop(customer["id"], None)
            payment_intents.customer_present(emu, pm["id"])  # 3D Secure is completed on this page
            ok, code = invoice_family.attempt_invoice(emu, invoice, pm["id"])
            if not ok:
                invoice_family.record_failure(emu, invoice)
                error = DECLINE_MESSAGES.get(code, "Your card was declined.")
    lines = "".join(f"<tr><td>{e(line['description'])}</td><td style='text-align:right'>"
                    f"{money(line['amount'], line['currency'])}</td></tr>" for line in invoice["lines"]["data"])
    lines += "".join(f"<tr><th>{e(label)}</th><th style='text-align:right'>{money(amount, invoice['currency'])}</th></tr>"
                     for label, amount in invoice_family.summary_rows(emu, invoice))
    pay = ""
    if invoice["status"] in ("open", "uncollectible"):
        error_html = f"<div class=error role=alert>{e(error)}</div>" if error else ""
        pay = (f"<form class=card method=post action='/invoices/{e(invoice_id)}'><h2>Pay this invoice</h2>"
               f"{card_inputs(with_email=False)}{error_html}<button type=submit>Pay "
               f"{money(invoice['amount_remaining'], invoice['currency'])}</button>{TEST_CARD_HINT}</form>")
    body = f"""<div class=card><p class=muted>Invoice {e(invoice['number'])} {status_badge(invoice['status'])}</p>
<h1>{e(invoice['account_name'])}</h1><div class=amount>{money(invoice['total'], invoice['currency'])}</div>
<p class=muted>Billed to {e(invoice['customer_email'])} · {date(invoice['created'])}</p>
<table>{lines}</table><a class=button href='{e(invoice['invoice_pdf'])}'>Download PDF</a></div>{pay}"""
    return page(f"Invoice {invoice['number']}", body, split=bool(pay))


def invoice_pdf(emu, invoice_id: str) -> Response:
    invoice = emu.store.objects.get(invoice_id)
    if not invoice or invoice.get("object") != "invoice" or invoice["status"] == "draft":
        return not_found("This invoice does not exist.")
    lines = [f"Invoice {invoice['number']}", invoice["account_name"] or "",
             f"Billed to {invoice['customer_email']}", f"Date {date(invoice['created'])}", ""]
    lines += [f"{line['description']}  {money(line['amount'], line['currency'])}" for line in invoice["lines"]["data"]]
    lines += [""] + [f"{label}  {money(amount, invoice['currency'])}"
                     for label, amount in invoice_family.summary_rows(emu, invoice)]
    lines += [f"Amount paid {money(invoice['amount_paid'], invoice['currency'])}", f"Status {invoice['status']}"]
    return Response(200, simple_pdf(lines), {"Content-Disposition": f"inline; filename={invoice['number']}.pdf"},
                    content_type="application/pdf")


def simple_pdf(lines: list[str]) -> bytes:
    """A one-page PDF with lines of Helvetica text (Latin-1), enough for a PDF reader to extract."""
    def escape(text: str) -> str:
        text = text.encode("latin-1", "replace").decode("latin-1")
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = "BT /F1 12 Tf 56 780 Td 16 TL " + " ".join(f"({escape(line)}) '" for line in lines) + " ET"
    stream_bytes = stream.encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length " + str(len(stream_bytes)).encode() + b" >>\nstream\n" + stream_bytes + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
