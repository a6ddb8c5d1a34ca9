"""The figures the analytics page reads: monthly ones written daily by `analytics_snapshot_build`, hourly
ones (operations, last 7 days) written every hour by `analytics_hourly_build`.

One row per (period, figure, dimension): a long table, so a new figure needs no migration. What each
figure counts is defined once, in the selectors of the app that owns its rows (the core's in
`billing_console.analytics.selectors`, dunning's in `dunning.analytics`, deployments' in
`deployments.analytics`).
"""
from django.db import models


class MonthlyFigure(models.Model):
    month = models.DateField(help_text="First day of the month (UTC).")
    figure = models.CharField(max_length=48)
    dimension = models.CharField(max_length=64, blank=True, help_text="Currency, plan, or empty.")
    value = models.BigIntegerField(help_text="A count, or an amount in minor units of the currency.")
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["month", "figure", "dimension"], name="monthlyfigure_unique")]
        indexes = [models.Index(fields=["month"], name="monthlyfigure_month")]
        ordering = ["month", "figure", "dimension"]
        # "view_" so the support group (every console view_ permission) gets it with the rest.
        permissions = [("view_analytics", "Can view the analytics page")]

    def __str__(self):
        return f"{self.month:%Y-%m} {self.figure} {self.dimension}={self.value}"


class HourlyFigure(models.Model):
    """The operations figures per hour over the last days, written by `analytics_hourly_build`."""

    hour = models.DateTimeField(help_text="Start of the hour (UTC).")
    figure = models.CharField(max_length=48)
    dimension = models.CharField(max_length=64, blank=True)
    value = models.BigIntegerField(help_text="A count, or milliseconds for a lag.")
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "figure", "dimension"], name="hourlyfigure_unique")]
        indexes = [models.Index(fields=["hour"], name="hourlyfigure_hour")]
        ordering = ["hour", "figure", "dimension"]

    def __str__(self):
        return f"{self.hour:%Y-%m-%d %H:00} {self.figure} {self.dimension}={self.value}"
