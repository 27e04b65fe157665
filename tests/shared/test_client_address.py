"""Who a per-client rate limit counts (shared/http.client_address): the socket peer, unless the peer is a
trusted reverse proxy (CACERT_TRUSTED_PROXIES); then the nearest X-Forwarded-For hop that is not one of
the proxies. What the client itself wrote into the header is never believed."""

from __future__ import annotations

import ipaddress

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from shared.config import ConfigError, HttpSettings, load
from shared.http import TRUSTED_PROXIES_KEY, client_address

INGRESS = [ipaddress.ip_network("10.0.0.0/8")]


def request(peer: str, forwarded: str | None = None, trusted: list | None = None) -> web.Request:  # type: ignore[type-arg]
    app = web.Application()
    app[TRUSTED_PROXIES_KEY] = trusted if trusted is not None else INGRESS
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    transport_peer = (peer, 40000)

    class Transport:
        def get_extra_info(self, name: str, default: object = None) -> object:
            return transport_peer if name == "peername" else default

        def is_closing(self) -> bool:
            return False

    return make_mocked_request("GET", "/v1/sessions", headers=headers, app=app, transport=Transport())


def test_behind_the_ingress_the_client_is_the_hop_the_proxy_saw() -> None:
    assert client_address(request("10.1.2.3", "203.0.113.7")) == "203.0.113.7"
    # a client that forges entries of its own only adds them to the left: the proxy's view still wins
    assert client_address(request("10.1.2.3", "198.51.100.1, 203.0.113.7")) == "203.0.113.7"
    # two trusted proxies in a row are both skipped
    assert client_address(request("10.1.2.3", "203.0.113.7, 10.9.9.9")) == "203.0.113.7"


def test_a_peer_that_is_not_a_trusted_proxy_is_the_client_whatever_it_claims() -> None:
    assert client_address(request("203.0.113.9", "198.51.100.1")) == "203.0.113.9"
    assert client_address(request("10.1.2.3", "198.51.100.1", trusted=[])) == "10.1.2.3"


def test_a_missing_or_garbled_header_falls_back_to_the_peer() -> None:
    assert client_address(request("10.1.2.3")) == "10.1.2.3"
    assert client_address(request("10.1.2.3", "not-an-address")) == "10.1.2.3"
    assert client_address(request("10.1.2.3", "10.4.4.4")) == "10.1.2.3"


def test_trusted_proxies_are_cidrs_checked_at_start_up() -> None:
    assert load(HttpSettings, {"CACERT_TRUSTED_PROXIES": "10.0.0.0/8, fd00::/8"}).trusted_networks == [
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
    with pytest.raises(ConfigError, match="CACERT_TRUSTED_PROXIES: 'ingress' is not a CIDR"):
        load(HttpSettings, {"CACERT_TRUSTED_PROXIES": "ingress"})
