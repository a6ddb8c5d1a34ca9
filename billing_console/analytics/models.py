"""The monthly figures the analytics page reads, written by `analytics_snapshot_build`.

One row per (month, figure, dimension): a long table, so a new figure needs no migration. What each
figure counts is defined once, in `billing_console.analytics.selectors`.
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
