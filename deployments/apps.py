from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    verbose_name = "Deployments"

    def ready(self):
        from billing_console.ops.health import register_cloud_health
        from deployments import webhooks  # noqa: F401  (registers the Stripe receivers)
        from deployments.selectors import cloud_health_section

        register_cloud_health(cloud_health_section)

        # /api/ops/summary and the daily health report: deployments by status.
        from billing_console.ops.summary import register_ops_section
        from deployments.selectors import ops_section

        register_ops_section("deployments", ops_section)

        # rebuild_from_stripe: deployment shells (no token) from what deployment_create kept on Stripe.
        from billing_console.ops.rebuild import register_rebuilder
        from deployments.rebuild import rebuild_deployment

        register_rebuilder(rebuild_deployment)

        # preflight: the manifest must name a release before anyone can be deployed.
        from billing_console.ops.checks import register_preflight_check
        from deployments.manifest import manifest_preflight

        register_preflight_check(manifest_preflight)

        # notify_token_rotation: the deadline it emails is recorded on the customer's deployments.
        from billing_console.ops.notices import register_token_rotation_listener
        from deployments.rotation import deployments_request_rotation

        register_token_rotation_listener(deployments_request_rotation)

        # Support console (billing_console.admin.dashboard / .search): deployments by status on the front page,
        # and script names / account ids in the global search.
        from billing_console.admin.dashboard import register_dashboard_section
        from billing_console.admin.search import register_search_provider
        from deployments import console

        register_dashboard_section(console.dashboard_section)
        register_search_provider(console.search_hits)

        # The analytics page (billing_console.analytics): this app's charts.
        from billing_console.analytics.registry import register_analytics_section, register_hourly_figures
        from deployments import analytics

        register_hourly_figures(analytics.push_outcome_figures)
        register_analytics_section(analytics.analytics_charts)

        # /metrics (billing_console.ops.metrics): this app's families, computed at scrape time.
        from billing_console.ops.metrics import register_metrics
        from deployments.metrics import push_metrics

        register_metrics(push_metrics)

        # alert_check (billing_console.ops.alerts): this app's problems.
        from billing_console.ops.alerts import register_alert_provider
        from deployments.alerts import push_failure_problems

        register_alert_provider(push_failure_problems)
