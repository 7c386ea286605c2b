"""What docs/operations-scaling.md tells an operator to deploy is what the deploy/ cluster runs:
the nginx site and the app hosts' environment file appear in the page verbatim."""

import re
from pathlib import Path

from deploy import services, topology

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "operations-scaling.md"


def fenced_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_page_shows_the_nginx_site_the_cluster_runs():
    assert (ROOT / "deploy" / "nginx" / "native.conf").read_text() in fenced_blocks("nginx")


def test_the_page_shows_the_environment_file_the_app_hosts_run_with():
    assert services.ENV_TEMPLATE.read_text() in fenced_blocks("sh")


def test_the_nginx_site_sends_every_app_host_both_kinds_of_traffic():
    site = (ROOT / "deploy" / "nginx" / "native.conf").read_text()
    for host in topology.APPS:
        assert f"server {host.address('front')}:{topology.HTTP_PORT} " in site
        assert f"server {host.address('front')}:{topology.WS_PORT} " in site
    # The client IP rule (NATIVE_TRUSTED_PROXIES) needs X-Forwarded-For on both paths: a
    # location that sets any proxy header inherits none from the server block.
    for location in re.findall(r"location [^{]+\{(.*?)\n    \}", site, flags=re.S):
        assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in location


def test_the_environment_file_trusts_exactly_the_proxy():
    env = services.parse_env(services.ENV_TEMPLATE.read_text())
    assert env["NATIVE_TRUSTED_PROXIES"] == f"{topology.PROXY.address('front')}/32"
    assert env["ALLOWED_HOSTS"] == topology.PROXY.address("public")
    assert env["DEBUG"] == "false"
