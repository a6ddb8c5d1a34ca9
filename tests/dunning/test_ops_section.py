"""The dunning section of /api/ops/summary: counts only, and the problems operators must hear about."""
from datetime import timedelta

import pytest
from django.utils import timezone

from billing_console.ops import summary as ops
from dunning.selectors import dunning_ops_section
from tests.dunning.factories import DunningCaseFactory, DunningStepLogFactory

pytestmark = pytest.mark.django_db


def test_section_counts_cases_backlog_and_recent_sends(policy):
    now = timezone.now()
    case = DunningCaseFactory(opened_at=now - timedelta(days=2))
    DunningCaseFactory(status="exhausted")
    DunningCaseFactory(status="recovered")
    DunningStepLogFactory(case=case, step_code="FAIL_IMMEDIATE", status="sent", sent_at=now)
    DunningStepLogFactory(case=case, step_code="SOFT_D+1", channel="whatsapp", status="failed", reason="instance_disconnected")
    DunningStepLogFactory(case=case, step_code="SOFT_D+3", status="queued", due_at=now - timedelta(hours=2))

    section = dunning_ops_section(now=now)
    assert (section["openCases"], section["exhaustedCases"], section["backlog"]) == (1, 1, 1)
    assert section["emails24h"] == {"sent": 1, "failed": 0} and section["whatsapp24h"] == {"sent": 0, "failed": 1}
    assert len(section["problems"]) == 2
    assert "1 dunning step failed" in section["problems"][0] and "due and unsent" in section["problems"][1]


def test_section_is_registered_in_the_ops_summary(policy):
    summary = ops.ops_summary()
    assert summary["dunning"]["openCases"] == 0 and summary["dunning"]["backlog"] == 0


def test_section_query_count_is_fixed(policy, django_assert_max_num_queries):
    for _ in range(20):
        DunningStepLogFactory(status="failed")
    with django_assert_max_num_queries(1):
        dunning_ops_section()
