"""The container's HEALTHCHECK: exit 0 when ``GET /health`` (liveness) answers 200, else 1.

Standard library only (the image has no curl). It reads the service's own settings from the
environment: ``SLUICE_PORT``, ``SLUICE_HOST`` (any-address binds are reached on loopback) and
``SLUICE_CERTFILE`` (then https, without verifying the certificate: the server is this
container's own process). Settings given as command-line flags instead are not seen here.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request

ANY_ADDRESS = ("", "0.0.0.0", "::", "[::]")


def health_url(environ: dict[str, str]) -> str:
    host = environ.get("SLUICE_HOST", "").strip()
    if host in ANY_ADDRESS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    scheme = "https" if environ.get("SLUICE_CERTFILE") else "http"
    return f"{scheme}://{host}:{environ.get('SLUICE_PORT', '8000').strip()}/health"


def main() -> int:
    url = health_url(dict(os.environ))
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=4, context=context) as resp:
            status = resp.status
    except Exception as exc:  # refused, timed out, or an HTTPError such as 500
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    print(f"{url}: {status}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
