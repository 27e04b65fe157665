"""Smoke test of the CRL scale benchmark: a CI-sized run reports both sides, and the sharded CA's largest CRL
is smaller than the single full CRL (no timing bound: speed is what the benchmark prints, not what a test
asserts)."""

from __future__ import annotations

import pytest

from benchmarks import crl_scale

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def test_a_small_run_compares_sharded_crls_with_one_full_crl(stack_env: dict[str, str]) -> None:
    result = await crl_scale.measure(stack_env["CACERT_MONGO_URL"], revoked=2000, shards=8, repeat=2)
    sharded, unsharded = result["sharded"], result["unsharded"]
    assert result["revoked_per_ca"] == 2000 and result["shards"] == 8 and len(result["loadavg"]) == 3
    assert sharded["crls"] == 8 and unsharded["crls"] == 1
    for side in (sharded, unsharded):
        assert len(side["publish_after_one_revocation_s"]) == 2
        assert side["publish_after_one_revocation_median_s"] > 0
    # Every revocation is listed once: 2000 filled plus the two revoked during the run.
    assert unsharded["largest_crl_entries"] == 2002
    assert 2002 / 8 <= sharded["largest_crl_entries"] < unsharded["largest_crl_entries"]
    assert sharded["largest_crl_bytes"] < unsharded["largest_crl_bytes"]
    assert 0 < result["ratio_largest_crl_bytes"] < 1 and result["ratio_publish_time"] > 0
    assert sharded["largest_crl"].startswith("/class1/") and unsharded["largest_crl"] == "/class3.crl"
