"""Fault tests: break the real local stack (kill signers, stop Kafka / FerretDB / SMTP) and count.

Run them alone with `python -m pytest tests/faults` (marker `faults`). The number of certificate
requests per run is CACERT_FAULT_REQUESTS (default 100 in CI; 1000 for the full run, see README).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.signer.ca.ceremony import bootstrap
from services.signer.ca.urls import CAUrls
from tests.faults.cluster import PASSPHRASE, PUBLIC_URL


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: fault-injection tests against the real local stack")


@pytest.fixture(scope="session")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fault-ca")
    bootstrap(directory, PASSPHRASE, "p256", class1_urls=CAUrls.under(PUBLIC_URL, "class1"))
    return directory


