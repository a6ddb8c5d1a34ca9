"""The licence API skips the middleware it has no use for.

Its views (``api_view``) read no cookie, session, user or message and are CSRF-exempt: sessions,
CSRF, auth, messages, CommonMiddleware's slash/www redirects and X-Frame-Options do nothing for a JSON
call from a desktop app but cost a measurable share of the hot status call. Listed after the
request-id and security middleware, which still apply (log context, HTTPS redirect, HSTS, nosniff).
"""
from __future__ import annotations

from django.urls import NoReverseMatch, Resolver404, resolve, reverse


class LicenseApiMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.routes: dict[str, object] = {}  # exact path -> ResolverMatch, only for the API's own views
        self.prefix: str | None = None

    def __call__(self, request):
        path = request.path_info
        match = self.routes.get(path)
        if match is None:
            if not path.startswith(self._prefix()):
                return self.get_response(request)
            try:
                match = resolve(path)
            except Resolver404:
                return self.get_response(request)
            if not getattr(match.func, "license_api", False):
                return self.get_response(request)
            self.routes[path] = match
        request.get_host()  # ALLOWED_HOSTS still holds (CommonMiddleware's check on other routes)
        request.resolver_match = match
        response = match.func(request, *match.args, **match.kwargs)
        if not response.has_header("Content-Length"):  # CommonMiddleware's job on other routes
            response.headers["Content-Length"] = str(len(response.content))
        return response

    def _prefix(self) -> str:
        if self.prefix is None:
            try:
                self.prefix = reverse("licensing:status").rpartition("/")[0] + "/"
            except NoReverseMatch:  # a URLconf without the licence API
                self.prefix = "\0"
        return self.prefix
