"""Two runs at once (two threads, each with its own database connection) never push a deployment twice."""
import threading
from collections import Counter

import pytest

from deployments.models import PublishVersion
from deployments.push import deployments_push
from tests.markers import requires_postgres

pytestmark = pytest.mark.django_db(transaction=True)


@requires_postgres
def test_overlapping_runs_push_each_deployment_once(cloudflare, bundles, make_deployment):
    from django.db import connection

    deployments = [make_deployment() for _ in range(30)]
    cloudflare.set_latency(0.02)
    barrier = threading.Barrier(2)
    reports, errors = [], []

    def run():
        try:
            barrier.wait()
            reports.append(deployments_push(concurrency=4))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    per_script = Counter(u.script_name for u in cloudflare.uploads)
    assert sorted(per_script) == sorted(d.script_name for d in deployments)
    assert set(per_script.values()) == {1}
    assert sum(r.counts["pushed"] for r in reports) == 30
    assert PublishVersion.objects.count() == 30
    assert not PublishVersion.objects.exclude(status=PublishVersion.Status.LIVE).exists()
