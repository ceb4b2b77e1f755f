"""Running it in production: metrics, request ids, API keys, CORS, limits, TLS, drain."""

from __future__ import annotations

import logging
import signal
import ssl
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import trustme
from prometheus_client.parser import text_string_to_metric_families

from .server import RunningServer, running_server, serving
from .sse_client import Frame, content_of, frames

CHAT = "/v1/chat/completions"
ROOT = Path(__file__).resolve().parents[2]
HELLO = [{"role": "user", "content": "Tell me about the sea."}]
#: Access-Control-Request-Headers of a browser's preflight before a request of the official
#: OpenAI JavaScript SDK (v4 to v6: its X-Stainless-* headers; accept is CORS-safelisted).
SDK_PREFLIGHT_HEADERS = (
    "authorization,content-type,x-stainless-arch,x-stainless-lang,x-stainless-os,"
    "x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,"
    "x-stainless-runtime-version,x-stainless-timeout"
)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = httpx.get(url + "/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_move_as_requests_flow(server: RunningServer) -> None:
    server.wait_idle()
    before = scrape(server.url)
    body = {
        "messages": HELLO,
        "max_tokens": 12,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.Client(base_url=server.url, timeout=60) as client:
        with client.stream("POST", CHAT, json=body) as response:
            data = [f for f in frames(response) if f.kind == "data"]
        usage = data[-2].json()["usage"]
        # A client that leaves mid-stream is counted as a cancellation.
        with client.stream("POST", CHAT, json={**body, "max_tokens": 2000}) as response:
            next(iter(frames(response)))
    server.wait_idle()
    after = scrape(server.url)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("sluice_requests_total", route=CHAT, status="200") == 2
    assert delta("sluice_completion_tokens_total") >= 12
    assert delta("sluice_prompt_tokens_total") >= usage["prompt_tokens"]
    assert delta("sluice_time_to_first_token_seconds_count") >= 1
    assert delta("sluice_inter_token_seconds_count") >= 11
    assert delta("sluice_request_duration_seconds_count", route=CHAT) == 2
    assert delta("sluice_cancellations_total", cause="client_gone") == 1
    assert delta("sluice_decode_steps_total") >= 12
    assert after[("sluice_active_sequences", ())] == 0
    assert after[("sluice_queue_depth", ())] == 0
    assert 0 < after[("sluice_kv_cache_usage_ratio", ())] <= 1


def test_request_ids_are_echoed_or_made_and_logged(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="sluice.access"):
        given = httpx.get(server.url + "/health", headers={"x-request-id": "trace-42"})
        made = httpx.get(server.url + "/v1/models")
        missing = httpx.get(server.url + "/nowhere")
    assert given.headers["x-request-id"] == "trace-42"
    assert len(made.headers["x-request-id"]) == 32
    assert missing.headers["x-request-id"]
    logged = {getattr(r, "request_id", None): r.getMessage() for r in caplog.records}
    assert "GET /health 200" in logged["trace-42"]
    assert "GET /nowhere 404" in logged[missing.headers["x-request-id"]]


def test_api_keys(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# team keys\nfile-key\n")
    with running_server(api_keys="k-one, k-two", api_key_file=str(key_file)) as srv:
        body = {"messages": HELLO, "max_tokens": 2}
        none = httpx.post(srv.url + CHAT, json=body)
        wrong = httpx.post(srv.url + CHAT, json=body, headers={"authorization": "Bearer nope"})
        right = httpx.post(srv.url + CHAT, json=body, headers={"authorization": "Bearer k-two"})
        from_file = httpx.get(srv.url + "/v1/models", headers={"authorization": "Bearer file-key"})
        public = [httpx.get(srv.url + p).status_code for p in ("/health", "/ready", "/metrics")]
        sdk = openai.OpenAI(base_url=srv.api, api_key="k-one", max_retries=0)
        ok = sdk.chat.completions.create(model="m", messages=HELLO, max_tokens=2)  # type: ignore[arg-type]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.api, api_key="bad", max_retries=0).models.list()
    for reply, code in ((none, "missing_api_key"), (wrong, "invalid_api_key")):
        assert reply.status_code == 401
        assert reply.json()["error"]["code"] == code
        assert reply.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 200
    assert from_file.status_code == 200
    assert public == [200, 200, 200]
    assert ok.choices[0].message.content is not None


def test_cors_preflight_and_streamed_cross_origin_response() -> None:
    origin = "https://app.example"
    with running_server(cors_origins=origin) as srv, httpx.Client(base_url=srv.url) as client:
        preflight = client.options(
            CHAT,
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        # What a browser asks before the official OpenAI JavaScript SDK's requests.
        sdk = client.options(
            CHAT,
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": SDK_PREFLIGHT_HEADERS,
            },
        )
        stranger = client.options(
            CHAT,
            headers={
                "origin": "https://evil.example",
                "access-control-request-method": "POST",
            },
        )
        body = {"messages": HELLO, "max_tokens": 8, "stream": True}
        with client.stream("POST", CHAT, json=body, headers={"origin": origin}) as response:
            allow = response.headers.get("access-control-allow-origin")
            exposed = response.headers.get("access-control-expose-headers", "")
            received = list(frames(response))
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert sdk.status_code == 200
    assert sdk.headers["access-control-allow-origin"] == origin
    allowed = {h.strip() for h in sdk.headers["access-control-allow-headers"].lower().split(",")}
    assert set(SDK_PREFLIGHT_HEADERS.split(",")) <= allowed
    assert stranger.status_code == 400
    assert allow == origin
    assert "x-request-id" in exposed.lower()
    assert received[-1].text == "[DONE]"


def test_cors_is_off_by_default(server: RunningServer) -> None:
    reply = httpx.get(server.url + "/v1/models", headers={"origin": "https://app.example"})
    assert "access-control-allow-origin" not in reply.headers
    preflight = httpx.options(
        server.url + CHAT,
        headers={
            "origin": "https://app.example",
            "access-control-request-method": "POST",
        },
    )
    assert preflight.status_code == 405


def test_limits() -> None:
    with (
        running_server(max_messages=3, max_tokens_limit=50) as srv,
        httpx.Client(base_url=srv.url) as client,
    ):
        many = client.post(CHAT, json={"messages": HELLO * 4})
        greedy = client.post(CHAT, json={"messages": HELLO, "max_tokens": 100})
        fine = client.post(CHAT, json={"messages": HELLO * 3, "max_tokens": 50})
        form = client.post(
            CHAT,
            content=b"messages=hi",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert many.status_code == 400
    assert "4 messages" in many.json()["error"]["message"]
    assert "3" in many.json()["error"]["message"]
    assert greedy.status_code == 400
    assert greedy.json()["error"]["param"] == "max_tokens"
    assert "50" in greedy.json()["error"]["message"]
    assert fine.status_code == 200
    assert form.status_code == 415
    assert form.json()["error"]["code"] == "unsupported_media_type"


def test_tls_with_http2_by_alpn(tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert))
    for blob in certificate.cert_chain_pems[1:]:
        with cert.open("ab") as out:
            out.write(blob.bytes())
    certificate.private_key_pem.write_to_path(str(key))
    trust = ssl.create_default_context()
    authority.configure_trust(trust)
    with running_server(certfile=str(cert), keyfile=str(key)) as srv:
        url = f"https://127.0.0.1:{srv.port}"
        with httpx.Client(base_url=url, http2=True, verify=trust, timeout=60) as client:
            body = {"messages": HELLO, "max_tokens": 16, "stream": True}
            with client.stream("POST", CHAT, json=body) as response:
                version = response.http_version
                received = list(frames(response))
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{srv.port}/health", timeout=5)
    assert version == "HTTP/2"
    assert received[-1].text == "[DONE]"
    assert any(f.kind == "data" and f.text != "[DONE]" and content_of(f.json()) for f in received)


def test_sigterm_drains_live_streams_and_exits_zero() -> None:
    argv = [
        sys.executable,
        "service.py",
        "--host",
        "127.0.0.1",
        "--slots",
        "3",
        "--shutdown-grace",
        "5",
        "--threads",
        "1",
        "--log-level",
        "warning",
    ]
    with serving(argv) as (url, process):
        results: dict[str, list[Frame]] = {"short": [], "long-1": [], "long-2": []}
        short_nearly_done = threading.Event()

        def stream(name: str, tokens: int) -> None:
            body = {"messages": HELLO, "max_tokens": tokens, "ignore_eos": True, "stream": True}
            with (
                httpx.Client(base_url=url, timeout=60) as client,
                client.stream("POST", CHAT, json=body) as response,
            ):
                for frame in frames(response):
                    results[name].append(frame)
                    if name == "short" and len(results[name]) == 36:
                        short_nearly_done.set()

        workers = [
            threading.Thread(target=stream, args=(name, tokens))
            for name, tokens in (("short", 40), ("long-1", 3000), ("long-2", 3000))
        ]
        for worker in workers:
            worker.start()
        # SIGTERM when the short stream has a few tokens to go and the long ones thousands:
        # the grace period lets the first finish and not the others, at any plausible speed.
        assert short_nearly_done.wait(timeout=60)
        assert all(results[name] for name in ("long-1", "long-2"))
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.3)
        ready = httpx.get(url + "/ready")
        refused = httpx.post(url + CHAT, json={"messages": HELLO, "max_tokens": 2})
        for worker in workers:
            worker.join(timeout=60)
        code = process.wait(timeout=60)
        stopped = time.monotonic() - signalled
    assert code == 0
    # Within what an orchestrator must allow (deploy/: the grace period is set above
    # --shutdown-grace plus Sluice's closing steps, 5 s + Hypercorn's 10 s), with slack
    # for a loaded machine: not a speed figure, the bound past which a pod gets SIGKILL.
    assert stopped < 5 + 15 + 10, stopped
    assert ready.status_code == 503
    assert ready.json()["status"] == "draining"
    assert refused.status_code == 503
    assert refused.headers["retry-after"]
    assert refused.json()["error"]["code"] == "shutting_down"
    # The short stream finished within the grace period; the long ones were ended with an
    # error frame. frames() already failed on any truncated frame.
    short = [f for f in results["short"] if f.kind == "data"]
    assert short[-1].text == "[DONE]"
    assert short[-2].json()["choices"][0]["finish_reason"] == "length"
    for name in ("long-1", "long-2"):
        last = [f for f in results[name] if f.kind == "data"][-1].json()
        assert "shutting down" in last["error"]["message"]
