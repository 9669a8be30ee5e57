"""How many SigV4 verifications per second: HMAC (every API call) vs RSA-PSS (managed-instance token).

Run: ``.venv/bin/python bench/bench_auth.py [-n N]``. Both are measured in the same run, on the
same kind of request (an SSM JSON 1.1 POST as the AWS CLI and the agent send it), parse included.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable

from openssm.auth.rsa_identity import generate_key_pair
from openssm.auth.sigv4 import HttpRequest, parse_request, sign_hmac, sign_rsa, verify_hmac, verify_rsa

WHEN = dt.datetime(2026, 11, 28, 16, 31, 9, tzinfo=dt.UTC)
URL = "http://127.0.0.1:19431/"
HOST = "127.0.0.1:19431"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def _ssm_request(target: str, body: bytes, added: dict[str, str]) -> HttpRequest:
    headers = [
        ("Host", HOST),
        ("Accept-Encoding", "identity"),
        ("X-Amz-Target", target),
        ("Content-Type", "application/x-amz-json-1.1"),
        ("User-Agent", "aws-cli/1.45.11 botocore/1.43.11"),
        *added.items(),
        ("Content-Length", str(len(body))),
    ]
    return HttpRequest("POST", "/", "", headers, body)


def hmac_request() -> HttpRequest:
    body = b'{"Target": "i-0123456789abcdef0"}'
    signed = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AmazonSSM.StartSession"}
    added = sign_hmac(
        "POST", URL, signed, body, access_key_id="AKIDEXAMPLE", secret_key=SECRET_KEY,
        session_token=None, region="us-east-1", service="ssm", now=WHEN,
    )  # fmt: skip
    return _ssm_request("AmazonSSM.StartSession", body, added)


def rsa_request() -> tuple[HttpRequest, bytes]:
    private_der, public_der = generate_key_pair()
    body = b'{"Fingerprint":"92423b92-2ffe-4bff-9225-e31b46e5ab28"}'
    target = "AmazonSSM.RequestManagedInstanceRoleToken"
    signed = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}
    added = sign_rsa(
        "POST", URL, signed, body, instance_id="mi-0123456789abcdef0", private_key_der=private_der,
        region="us-east-1", now=WHEN,
    )  # fmt: skip
    return _ssm_request(target, body, added), public_der


def _rate(n: int, verify_once: Callable[[], None]) -> float:
    verify_once()  # warm caches (key parsing, regexes) outside the timed loop
    start = time.perf_counter()
    for _ in range(n):
        verify_once()
    return n / (time.perf_counter() - start)


def measure_sigv4(n: int) -> float:
    """Header-signed HMAC SigV4 verifications (parse + verify) per second."""
    req = hmac_request()

    def once() -> None:
        verify_hmac(req, parse_request(req), SECRET_KEY, now=WHEN)

    return _rate(n, once)


def measure_rsa(n: int) -> float:
    """RSA-PSS (managed-instance) SigV4 verifications (parse + verify) per second."""
    req, public_der = rsa_request()

    def once() -> None:
        verify_rsa(req, parse_request(req), public_der, now=WHEN)

    return _rate(n, once)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20000, help="verifications per measurement (default 20000)")
    args = parser.parse_args()
    hmac_rate = measure_sigv4(args.n)
    rsa_rate = measure_rsa(args.n)
    print(f"SigV4 HMAC header-signed SSM request : {hmac_rate:12,.0f} verifications/s")
    print(f"SigV4 RSA-PSS managed-instance token : {rsa_rate:12,.0f} verifications/s")
    print(f"HMAC / RSA ratio                     : {hmac_rate / rsa_rate:12.2f}x")


if __name__ == "__main__":
    main()
