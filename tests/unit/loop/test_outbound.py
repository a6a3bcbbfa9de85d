"""The outbound policy as a table: every internal target refused by default, in every spelling.

Nothing here opens a connection: addresses are judged as written.
"""

from __future__ import annotations

import ipaddress

import pytest

from lambdaop.loop.outbound import SECURE, Policy, Refused, literal_address

# the review's 19 targets (the last one, a name resolving to loopback, is judged at call time:
# tests/integration/test_outbound.py), then more spellings of the same places
REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://127.0.0.1:8080/",
    "http://localhost/",
    "http://[::1]/",
    "http://127.1/",
    "http://0.0.0.0/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://10.0.0.5/",
    "http://172.16.3.4/",
    "http://192.168.1.1/",
    "http://[fe80::1%25eth0]/",
    "http://api.localhost/",
    "http://deep.sub.localhost:9000/x",
    "https://metadata/",
    # more spellings
    "http://0251.0376.0251.0376/",  # 169.254.169.254 in octal
    "http://0xa9fea9fe/",  # the same in hex
    "http://2852039166/",  # and in decimal
    "http://0x7f.0.0.1/",
    "http://017700000001/",
    "http://127.000.000.001/",
    "http://[::127.0.0.1]/",  # IPv4-compatible
    "http://[::ffff:7f00:1]/",  # IPv4-mapped, hex
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of the metadata address
    "http://[2002:7f00:1::]/",  # 6to4 of loopback
    "http://[fc00::1]/",
    "http://[ff02::1]/",
    "http://100.64.0.1/",  # CGNAT
    "http://224.0.0.1/",
    "http://[::]/",
    "http://LOCALHOST./",
    "http://instance-data/latest/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_internal_targets_are_refused_by_default_with_a_reason(url: str) -> None:
    with pytest.raises(Refused) as exc:
        SECURE.check_url(url)
    message = str(exc.value)
    assert "--allow-hosts" in message
    assert any(word in message for word in ("loopback", "private", "link-local", "internal name", "multicast", "unspecified", "carrier-grade", "reserved")), message  # fmt: skip


@pytest.mark.parametrize(
    "url",
    [
        "https://a6ilch6fb5.execute-api.ap-south-1.amazonaws.com/default/trial",
        "https://example.com/",
        "http://8.8.8.8/",
        "http://[2606:4700:4700::1111]/",
        "https://lambda-url.eu-west-1.on.aws/",
    ],
)
def test_public_targets_pass(url: str) -> None:
    SECURE.check_url(url)


def test_the_allow_list_opens_addresses_and_names_on_purpose() -> None:
    policy = Policy.parse("127.0.0.1, 10.0.0.0/8, *.corp.example")
    assert not policy.problems
    policy.check_url("http://127.0.0.1:9000/ok")
    policy.check_url("http://10.1.2.3/")
    policy.check_url("http://jobs.corp.example/")
    policy.check_address(ipaddress.ip_address("10.9.9.9"), "jobs.corp.example")
    with pytest.raises(Refused):
        policy.check_url("http://127.0.0.2/")
    with pytest.raises(Refused):
        policy.check_url("http://169.254.169.254/")
    with pytest.raises(Refused):
        policy.check_address(ipaddress.ip_address("192.168.0.1"), "evil.example")
    assert Policy.parse("not a cidr!").problems


def test_literal_addresses_in_every_form_libc_reads() -> None:
    assert literal_address("2130706433") == ipaddress.ip_address("127.0.0.1")
    assert literal_address("0177.0.0.1") == ipaddress.ip_address("127.0.0.1")
    assert literal_address("0x7f000001") == ipaddress.ip_address("127.0.0.1")
    assert literal_address("127.1") == ipaddress.ip_address("127.0.0.1")
    assert literal_address("[fe80::1%eth0]") == ipaddress.ip_address("fe80::1")
    assert literal_address("example.com") is None
    assert literal_address("deadbeef") is None  # a name made of hex letters is still a name
