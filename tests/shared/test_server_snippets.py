"""The server and client-certificate snippets shown on the certificate page and in the issued mail."""

from __future__ import annotations

import pytest

from shared.server_snippets import ROOT_CHOICES, client_auth, server_snippets


def test_client_auth_names_the_chosen_root_and_requires_a_certificate() -> None:
    s = server_snippets(["www.example.org", "example.org"], client_root_class=3)
    assert "SSLCACertificateFile /etc/ssl/certs/cacert-class3-root.pem" in s.apache_client_auth
    assert "SSLVerifyClient require" in s.apache_client_auth
    assert "ssl_client_certificate /etc/ssl/certs/cacert-class3-root.pem;" in s.nginx_client_auth
    assert "ssl_verify_client      on;" in s.nginx_client_auth
    assert "ServerAlias example.org" in s.apache_server
    assert "server_name www.example.org example.org;" in s.nginx_server
    everyone = server_snippets(["www.example.org"], client_root_class=1)
    assert "SSLCACertificateFile /etc/ssl/certs/cacert-roots.pem" in everyone.apache_client_auth


def test_the_advice_says_which_root_admits_whom() -> None:
    advice = server_snippets(["a.example.org"]).root_advice
    assert any("Class 3" in line and "assured members only" in line for line in advice)
    assert any("Class 1" in line and "everyone" in line for line in advice)
    text = server_snippets(["a.example.org"]).as_text()
    assert "SSLVerifyClient require" in text and "assured members only" in text


def test_the_advice_names_the_self_signed_class3_root_and_the_bundle() -> None:
    """What tests/integration/test_apache_client_trust.py checks with a real Apache."""
    class3, everyone = ROOT_CHOICES
    assert (class3.cert_class, class3.filename, class3.download) == (
        3, "cacert-class3-root.pem", "/roots/class3-root.pem")
    assert "self-signed" in class3.contents and "signed by Class 1" in class3.why
    assert (everyone.cert_class, everyone.filename, everyone.download) == (
        1, "cacert-roots.pem", "/roots/cacert-roots.pem")
    assert "followed by the Class 3 root" in everyone.contents
    apache, nginx = client_auth(3)
    assert apache.splitlines() == [
        "SSLCACertificateFile /etc/ssl/certs/cacert-class3-root.pem", "SSLVerifyClient require", "SSLVerifyDepth  3"]
    assert nginx.splitlines()[0] == "ssl_client_certificate /etc/ssl/certs/cacert-class3-root.pem;"


def test_a_wildcard_site_files_under_its_base_name() -> None:
    s = server_snippets(["*.example.org"])
    assert "ServerName *.example.org" in s.apache_server
    assert "/etc/ssl/certs/example.org.pem" in s.apache_server


def test_only_the_two_roots_can_be_named() -> None:
    with pytest.raises(ValueError, match="1 or 3"):
        server_snippets(["a.example.org"], client_root_class=2)
