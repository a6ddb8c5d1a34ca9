"""Forms of the customer pages: shape checks only; the services decide and report field errors."""
from django import forms

from billing_console.errors import ServiceError


class CheckoutForm(forms.Form):
    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email",
                                                                             "placeholder": "you@company.com"}))
    plan = forms.CharField(max_length=32, widget=forms.HiddenInput)


class RecoverForm(forms.Form):
    email = forms.EmailField(max_length=254, label="Your email",
                             widget=forms.EmailInput(attrs={"autocomplete": "email", "placeholder": "you@company.com",
                                                            "autofocus": True}))


def _token_field(label: str) -> forms.CharField:
    return forms.CharField(label=label, max_length=200, strip=True,
                           widget=forms.PasswordInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
                           help_text="Create it at dash.cloudflare.com → My Profile → API Tokens with "
                                     "\"Workers Scripts: Edit\" on this account. It is checked with Cloudflare "
                                     "before it is saved, and never shown again.")


class TokenForm(forms.Form):
    api_token = _token_field("New Cloudflare API token")


class PhoneForm(forms.Form):
    phone = forms.CharField(label="Mobile number for WhatsApp", max_length=64, required=False, strip=True,
                            widget=forms.TextInput(attrs={"autocomplete": "tel", "inputmode": "tel", "type": "tel",
                                                          "placeholder": "+55 11 99999-9999"}))
    consent = forms.BooleanField(required=False, label="Send me payment reminders about this subscription on WhatsApp "
                                                       "at this number. I can remove the number here at any time.")


class DeploymentForm(forms.Form):
    account_id = forms.CharField(label="Cloudflare account id", max_length=64, strip=True,
                                 widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false",
                                                               "placeholder": "32 characters, from the dashboard URL"}))
    script_name = forms.CharField(label="Worker name", max_length=63, strip=True,
                                  widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false",
                                                                "placeholder": "my-app"}))
    api_token = _token_field("Cloudflare API token")


def add_service_errors(form: forms.Form, exc: ServiceError) -> None:
    """Put a service's refusal on the form: per field when it names one, else on the form."""
    if exc.fields:
        for name, error in exc.fields.items():
            form.add_error(name if name in form.fields else None, error)
    else:
        form.add_error(None, exc.message)
