#!/usr/bin/env python3
"""Run scim2-tester's ``check_server`` against a live SCIM 2.0 server.

Usage:
    python3 scim_runner.py http://127.0.0.1:8080/scim/v2 --token SECRET
    SCIM_BASE_URL=http://127.0.0.1:8080/scim/v2 SCIM_TOKEN=SECRET python3 scim_runner.py

Prints one line per check result (status, resource type, title, reason), then a
summary with the count per status, then a plain "N passed, N failed, N skipped"
line. Exits 1 when any result is ERROR or CRITICAL (add --strict to also fail on
DEVIATION), 2 when the tester itself could not run.

HTTP engine: scim2-client's httpx2 SyncSCIMClient is used when the ``httpx2``
package is importable (``pip install 'scim2-client[httpx2]'``); otherwise (or
with --engine urllib) a small stdlib urllib engine implementing the same
``BaseSyncSCIMClient.request`` contract is used, so nothing beyond
scim2-tester / scim2-client / scim2-models is required.
"""

from __future__ import annotations

import argparse
import json as jsonlib
import os
import sys
import traceback
from collections import Counter
from typing import Any

FAIL_STATUSES = {"ERROR", "CRITICAL"}
PASS_STATUSES = {"SUCCESS", "COMPLIANT", "ACCEPTABLE"}


# --------------------------------------------------------------------------- #
# HTTP engines
# --------------------------------------------------------------------------- #
def _default_headers(token: str | None) -> dict[str, str]:
    headers = {
        "Accept": "application/scim+json",
        "Content-Type": "application/scim+json",
        "User-Agent": "scim2-tester-runner",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _make_urllib_client(base_url: str, token: str | None, timeout: float):
    """A BaseSyncSCIMClient whose ``request`` is implemented with urllib."""
    import urllib.error
    import urllib.parse
    import urllib.request

    from scim2_client import BaseSyncSCIMClient
    from scim2_client import RequestNetworkException

    class _Response:
        """Implements scim2_client.client.RawResponse (status_code, headers, text)."""

        def __init__(self, status_code: int, headers: Any, body: bytes):
            self.status_code = status_code
            self.headers = headers  # email.message.Message: case-insensitive .get()
            self.content = body
            self.text = body.decode("utf-8", errors="replace")

        def json(self) -> Any:
            return jsonlib.loads(self.text)

        def __repr__(self) -> str:
            return f"<Response [{self.status_code}]>"

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None  # let 3xx reach the SCIM client, as httpx does by default

    opener = urllib.request.build_opener(_NoRedirect)
    root = base_url.rstrip("/")

    class UrllibSCIMClient(BaseSyncSCIMClient):
        def request(self, method: str, url: str, **kwargs: Any) -> _Response:  # type: ignore[override]
            params = kwargs.pop("params", None)
            payload = kwargs.pop("json", None)
            extra_headers = kwargs.pop("headers", None) or {}
            content = kwargs.pop("content", None)

            if url.startswith(("http://", "https://")):
                full = url
            else:
                full = root + ("" if url.startswith("/") else "/") + url
            if params:
                sep = "&" if "?" in full else "?"
                full += sep + urllib.parse.urlencode(params, doseq=True)

            body: bytes | None = None
            if payload is not None:
                body = jsonlib.dumps(payload).encode("utf-8")
            elif content is not None:
                body = content if isinstance(content, bytes) else str(content).encode()

            headers = {**_default_headers(token), **extra_headers}
            req = urllib.request.Request(full, data=body, method=method, headers=headers)
            try:
                with opener.open(req, timeout=timeout) as resp:
                    return _Response(resp.status, resp.headers, resp.read())
            except urllib.error.HTTPError as exc:  # non-2xx still is a response
                data = exc.read() if exc.fp is not None else b""
                return _Response(exc.code, exc.headers, data)
            except (urllib.error.URLError, OSError) as exc:
                net = RequestNetworkException()
                net.add_note(f"{method} {full}: {exc}")
                raise net from exc

    return UrllibSCIMClient()


def _make_httpx2_client(base_url: str, token: str | None, timeout: float):
    from httpx2 import Client  # type: ignore[import-not-found]
    from scim2_client.engines.httpx2 import SyncSCIMClient

    http = Client(
        base_url=base_url.rstrip("/"),
        headers=_default_headers(token),
        timeout=timeout,
    )
    return SyncSCIMClient(http)


def make_client(base_url: str, token: str | None, timeout: float, engine: str):
    if engine in ("auto", "httpx2"):
        try:
            return _make_httpx2_client(base_url, token, timeout), "httpx2"
        except ImportError:
            if engine == "httpx2":
                raise
    return _make_urllib_client(base_url, token, timeout), "urllib"


# --------------------------------------------------------------------------- #
# Reporting
# --------------------------------------------------------------------------- #
def _short(value: Any, limit: int) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def print_results(results: list[Any], verbose: bool, data_limit: int) -> Counter:
    counts: Counter = Counter()
    for r in results:
        status = r.status.name
        counts[status] += 1
        rtype = f"[{r.resource_type}] " if r.resource_type else ""
        reason = (r.reason or "").strip()
        first, *rest = reason.splitlines() or [""]
        print(f"{status:<10} {rtype}{r.title or '?'}: {first}")
        for line in rest:
            print(f"{'':<10}   {line}")
        if verbose and status not in PASS_STATUSES | {"SKIPPED"} and r.data is not None:
            print(f"{'':<10}   data: {_short(r.data, data_limit)}")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run scim2-tester check_server against a SCIM 2.0 server.",
    )
    parser.add_argument(
        "base_url",
        nargs="?",
        default=os.environ.get("SCIM_BASE_URL"),
        help="SCIM base URL, e.g. http://127.0.0.1:8080/scim/v2 (env SCIM_BASE_URL)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("SCIM_TOKEN"),
        help="bearer token sent as 'Authorization: Bearer <token>' (env SCIM_TOKEN)",
    )
    parser.add_argument("--engine", choices=["auto", "httpx2", "urllib"], default="auto")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--include-tags", default="", help="comma separated tags")
    parser.add_argument("--exclude-tags", default="", help="comma separated tags")
    parser.add_argument(
        "--resource-types", default="", help="comma separated, e.g. User,Group"
    )
    parser.add_argument("--strict", action="store_true", help="also fail on DEVIATION")
    parser.add_argument("-v", "--verbose", action="store_true", help="show data of failures")
    parser.add_argument("--data-limit", type=int, default=2000)
    parser.add_argument("--list-tags", action="store_true", help="list tags and exit")
    args = parser.parse_args(argv)

    try:
        from scim2_tester import check_server
        from scim2_tester import get_all_available_tags
    except ImportError as exc:  # pragma: no cover
        print(f"cannot import scim2_tester: {exc}", file=sys.stderr)
        return 2

    if args.list_tags:
        print("\n".join(get_all_available_tags()))
        return 0

    if not args.base_url:
        parser.error("base_url is required (argument or SCIM_BASE_URL)")

    def _set(value: str) -> set[str] | None:
        items = {v.strip() for v in value.split(",") if v.strip()}
        return items or None

    try:
        client, engine = make_client(args.base_url, args.token, args.timeout, args.engine)
    except ImportError as exc:
        print(f"cannot build the {args.engine} engine: {exc}", file=sys.stderr)
        return 2

    print(f"# scim2-tester against {args.base_url} (engine: {engine})")
    try:
        results = check_server(
            client,
            raise_exceptions=False,
            include_tags=_set(args.include_tags),
            exclude_tags=_set(args.exclude_tags),
            resource_types=sorted(_set(args.resource_types) or []) or None,
        )
    except Exception:  # the tester itself crashed
        traceback.print_exc()
        return 2

    counts = print_results(results, args.verbose, args.data_limit)
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    print(f"# Summary: {len(results)} results: {summary}")

    failing = set(FAIL_STATUSES)
    if args.strict:
        failing.add("DEVIATION")
    failed = sum(v for k, v in counts.items() if k in failing)
    passed = sum(v for k, v in counts.items() if k in PASS_STATUSES)
    skipped = counts.get("SKIPPED", 0)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
