"""The customer pages' own wording; words shared with the support console live in billing_console.wording."""

# Deployment errors in the customer's words (codes from deployments.models.ErrorCode; unknown codes fall back
# to the message the deployments app recorded).
DEPLOYMENT_ERROR_WORDS = {
    "token_invalid": "Cloudflare rejected the API token: it has expired or was revoked. Paste a fresh token below.",
    "token_scope": "The API token is missing the \"Workers Scripts: Edit\" permission for this account. "
                   "Create a token with that permission and paste it below.",
    "account_suspended": "Cloudflare has suspended this account. Resolve it with Cloudflare; we will retry after that.",
    "rate_limited": "Cloudflare asked us to slow down. We will retry automatically.",
    "upstream_error": "Cloudflare had an error. We will retry automatically.",
    "network": "We could not reach Cloudflare. We will retry automatically.",
    "request_rejected": "Cloudflare rejected the upload. Our team has been told.",
    "bundle_unavailable": "The release could not be downloaded. Our team has been told.",
    "token_unreadable": "We can no longer read your stored token. Paste a fresh token below.",
    "interrupted": "The last update was interrupted. We will retry automatically.",
}


def deployment_error_words(code: str, message: str) -> str:
    return DEPLOYMENT_ERROR_WORDS.get(code or "", message or "")


# Why updates are stopped, in the customer's words, per deployments.selectors.ResumeBlock code. Each says what
# brings updates back, since the page offers no Resume button for these. The automatic pauses ("ended",
# "locked") are the subscription's: billing_console.wording.deployment says those, for every state.
DEPLOYMENT_STOP_WORDS = {
    "token_stop": "Updates stopped because Cloudflare rejected the API token several times. Paste a fresh token "
                  "below and updates start again.",
    "no_token": "Updates wait for a Cloudflare API token. Paste one below and updates start.",
    "rotation_overdue": "Updates stopped because the Cloudflare API token was not rotated by its deadline. Paste a "
                        "fresh token below and updates start again.",
    "support": "Support paused updates to this deployment. Contact support to resume them.",
}


def deployment_stop_words(block: str) -> str:
    return DEPLOYMENT_STOP_WORDS.get(block or "", "")
