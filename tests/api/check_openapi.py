#!/usr/bin/env python3
"""Checks a live buyline against docs/openapi.yaml, on real requests over loopback.

    python3 tests/api/check_openapi.py target/debug/buyline [--examples N]

1. Every status the spec documents for every operation is driven on a real server, and every
   answer is checked against the spec: the status is documented for that operation, the
   content type is the documented one, and the body validates against the documented schema.
   Three servers do it: one on its embedded defaults (most statuses); one with
   `--max-connections-per-ip 1` outside demo mode, holding a connection open (`429` on every
   route); one with `--store` and `--bus` whose Redis and NATS are then killed (`503`). A
   documented status that no request drove fails the check, so the spec cannot promise what
   nobody tried.
2. Schemathesis then throws generated and malformed requests at every route of a fresh server
   (`--examples` per operation, default 25): every answer must conform to the spec, invalid
   requests must be refused, and no 5xx may come back.

Needs PyYAML, jsonschema and schemathesis (`pip install schemathesis` brings all three), and
`redis-server` and `nats-server` for the 503 server. A missing one is a loud skip, except under
CI=true, where it is a failure.
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.join(HERE, "..", "..", "docs", "openapi.yaml")
CI = os.environ.get("CI") == "true"

# The demo catalog's products (src/decorate/demo_catalog.json): one with a per-customer limit
# of one, and its partner.
LIMITED = "burberry-heritage-trench-limited"
PARTNER = "burberry"
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123", "name": "Ada"}
DECLINED = dict(CARD, number="4000000000000002")
ADDRESS = {"name": "Ada", "line1": "1 Way", "city": "London", "postal_code": "N1", "country": "GB"}


def missing(what):
    """A missing tool: a failure under CI=true, a loud skip elsewhere."""
    message = f"check_openapi: {what} is missing"
    if CI:
        sys.exit(f"FAIL: {message} (CI=true: nothing may be skipped)")
    print(f"SKIP: {message}; the check did not run", file=sys.stderr)
    sys.exit(0)


try:
    import jsonschema
    import yaml
except ImportError as error:
    missing(f"a Python module ({error.name}; pip install schemathesis)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(secret, subject, role, ttl=3600):
    """An HS256 token, as the server's signer makes one."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": subject, "role": role, "exp": int(time.time()) + ttl}).encode())
    signing = f"{header}.{claims}".encode()
    return f"{header}.{claims}.{b64(hmac.new(secret, signing, hashlib.sha256).digest())}"


class Spec:
    """The OpenAPI document: operations by (method, path template), and their responses."""

    def __init__(self, path):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.operations = {}
        for template, item in self.doc["paths"].items():
            for method, operation in item.items():
                if method in ("get", "put", "post", "delete", "patch"):
                    self.operations[(method.upper(), template)] = operation

    def documented(self):
        return {
            (op["operationId"], int(status))
            for op in self.operations.values()
            for status in op["responses"]
        }

    def resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            target = self.doc
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            node = target
        return node

    def validate(self, schema, value):
        # The document's components travel with the schema, so its `#/components/...` refs
        # resolve against them.
        rooted = dict(schema, components=self.doc["components"])
        jsonschema.Draft202012Validator(rooted).validate(value)


class Server:
    """A buyline process on a free loopback port, killed by its pid at the end."""

    def __init__(self, binary, secret_file, *extra):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="buyline-openapi-")
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        args = [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir",
                os.path.join(self.dir, "data"), "--firehose", "none", "--secret-file",
                secret_file, "--log", "warn", *extra]
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"FAIL: the server exited: {self.tail()}")
            try:
                status, _, _ = raw(self.port, "GET", "/readyz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"FAIL: the server was not ready in 30 s: {self.tail()}")

    def tail(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()[-2000:]

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def raw(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        connection.close()


class Checker:
    """Sends requests, checks each answer against the spec, records what was driven."""

    def __init__(self, spec):
        self.spec = spec
        self.driven = set()
        self.failures = []
        self.requests = 0

    def call(self, server, method, template, params=None, body=None, token=None, headers=None,
             query="", expect=None):
        path = template
        for name, value in (params or {}).items():
            path = path.replace("{" + name + "}", value)
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None and not isinstance(body, bytes):
            headers.setdefault("Content-Type", "application/json")
        status, answer_headers, data = raw(server.port, method, path + query, body, headers)
        self.requests += 1
        self.check(method, template, status, answer_headers, data, expect)
        return status, data

    def check_headers(self, where, response, headers):
        """Every documented header the answer must have is there, and each one documented
        matches its schema."""
        for name, header in (response.get("headers") or {}).items():
            header = self.spec.resolve(header)
            value = headers.get(name.lower())
            if value is None:
                if header.get("required"):
                    self.failures.append(f"{where}: no {name} header")
                continue
            schema = header.get("schema", {})
            if schema.get("type") in ("integer", "number", "boolean"):
                # Header values are text: `Retry-After: 5` is the integer 5.
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            try:
                self.spec.validate(schema, value)
            except jsonschema.ValidationError as error:
                self.failures.append(f"{where}: header {name}: {value!r}: {error.message}")

    def check(self, method, template, status, headers, data, expect):
        content_type = headers.get("content-type", "")
        where = f"{method} {template} -> {status}"
        operation = self.spec.operations[(method, template)]
        self.driven.add((operation["operationId"], status))
        if expect is not None and status != expect:
            self.failures.append(f"{where}: expected {expect}; body {data[:300]!r}")
        response = operation["responses"].get(str(status))
        if response is None:
            self.failures.append(f"{where}: status not documented; body {data[:300]!r}")
            return
        response = self.spec.resolve(response)
        self.check_headers(where, response, headers)
        content = response.get("content")
        if not content:
            return
        media = content_type.split(";")[0].strip()
        if media not in content:
            self.failures.append(f"{where}: content type {media!r}, documented {list(content)}")
            return
        schema = content[media].get("schema")
        if media == "application/json" and schema is not None:
            try:
                self.spec.validate(schema, json.loads(data))
            except (ValueError, jsonschema.ValidationError) as error:
                message = getattr(error, "message", str(error))
                self.failures.append(f"{where}: body does not match the spec: {message}")

    def upgrade(self, server, template, token=None, expect=None):
        """A real WebSocket upgrade request; only the status line and head are read."""
        query = f"?token={token}" if token else ""
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {template}{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n")
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            s.sendall(request.encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
        status = int(head.split(b" ", 2)[1])
        head, _, rest = head.partition(b"\r\n\r\n")
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        self.requests += 1
        self.check("GET", template, status, headers, rest, expect)


def expect_json(status, data, want):
    if status != want:
        raise SystemExit(f"FAIL: set-up step answered {status}: {data[:300]!r}")
    return json.loads(data)


def drive_defaults(checker, server, secret):
    """Everything a node on its embedded defaults answers (demo mode, local store)."""
    c = checker
    ada, bob = token(secret, "ada", "customer"), token(secret, "bob", "customer")
    admin = token(secret, "root", "admin")
    partner = token(secret, PARTNER, "partner")
    ingest = token(secret, "feed", "ingest")
    bad = ada[:-4] + ("AAAA" if not ada.endswith("AAAA") else "BBBB")
    big = b'{"x":"' + b"a" * (2 << 20) + b'"}'

    c.call(server, "GET", "/healthz", expect=200)
    c.call(server, "GET", "/readyz", expect=200)
    c.call(server, "GET", "/metrics", expect=200)

    c.upgrade(server, "/v1/stream", expect=101)
    c.call(server, "GET", "/v1/stream", expect=400)
    c.upgrade(server, "/v1/stream", token=bad, expect=401)
    c.upgrade(server, "/v1/ingest", token=ingest, expect=101)
    c.call(server, "GET", "/v1/ingest", token=ingest, expect=400)
    c.upgrade(server, "/v1/ingest", token=bad, expect=401)
    c.upgrade(server, "/v1/ingest", token=ada, expect=403)

    c.call(server, "GET", "/v1/products/{id}", {"id": LIMITED}, expect=200)
    c.call(server, "GET", "/v1/products/{id}", {"id": "no-such-product"}, expect=404)

    # A product whose holds last a second, for the expired-hold answers.
    quick = {"partner": PARTNER, "title": "Quick", "description": "Held for a second.",
             "image": "https://example.com/quick.jpg", "price": {"amount": 500, "currency": "usd"},
             "urls": ["https://example.com/quick"], "stock": 100, "hold_seconds": 1}
    c.call(server, "PUT", "/v1/admin/products/{id}", {"id": "quick"}, quick, admin, expect=200)
    c.call(server, "PUT", "/v1/admin/products/{id}", {"id": "quick"}, dict(quick, urls=[]),
           admin, expect=400)
    c.call(server, "PUT", "/v1/admin/products/{id}", {"id": "quick"}, quick, expect=401)
    c.call(server, "PUT", "/v1/admin/products/{id}", {"id": "quick"}, quick, ada, expect=403)
    c.call(server, "PUT", "/v1/admin/products/{id}", {"id": "quick"}, big, admin, expect=413)

    reserve = "/v1/reservations"
    held = expect_json(*c.call(server, "POST", reserve, body={"product": LIMITED, "quantity": 1},
                               token=ada, headers={"Idempotency-Key": "first"}), 201)
    c.call(server, "POST", reserve, body={"product": LIMITED, "quantity": 1}, token=ada,
           headers={"Idempotency-Key": "first"}, expect=201)
    c.call(server, "POST", reserve, body={"product": LIMITED, "quantity": 1}, token=ada,
           expect=409)
    c.call(server, "POST", reserve, body={"product": LIMITED}, token=ada, expect=400)
    c.call(server, "POST", reserve, body={"product": LIMITED, "quantity": 1}, expect=401)
    c.call(server, "POST", reserve, body={"product": LIMITED, "quantity": 1}, token=admin,
           expect=403)
    c.call(server, "POST", reserve, body={"product": "no-such-product", "quantity": 1},
           token=ada, expect=404)
    c.call(server, "POST", reserve, body=big, token=ada, expect=413)

    release = "/v1/reservations/{id}"
    other = expect_json(*c.call(server, "POST", reserve, body={"product": "quick", "quantity": 1},
                                token=bob), 201)
    c.call(server, "DELETE", release, {"id": other["id"]}, token=ada, expect=404)
    c.call(server, "DELETE", release, {"id": other["id"]}, expect=401)
    c.call(server, "DELETE", release, {"id": other["id"]}, token=admin, expect=403)
    c.call(server, "DELETE", release, {"id": other["id"]}, token=bob, expect=200)

    checkout = "/v1/orders"
    paid = {"reservation": held["id"], "shipping": ADDRESS, "payment": CARD, "save": True,
            "share_card_with_seller": True}
    c.call(server, "POST", checkout, body=dict(paid, payment=DECLINED), token=ada, expect=402)
    order = expect_json(*c.call(server, "POST", checkout, body=paid, token=ada,
                                headers={"Idempotency-Key": "pay-1"}), 201)
    c.call(server, "POST", checkout, body=paid, token=ada, headers={"Idempotency-Key": "pay-1"},
           expect=201)
    c.call(server, "POST", checkout, body=dict(paid, save=False), token=ada,
           headers={"Idempotency-Key": "pay-1"}, expect=409)
    c.call(server, "POST", checkout, body=dict(paid, shipping={}), token=ada, expect=400)
    c.call(server, "POST", checkout, body=paid, expect=401)
    c.call(server, "POST", checkout, body=paid, token=admin, expect=403)
    c.call(server, "POST", checkout, body=dict(paid, reservation="res_nothing"), token=ada,
           expect=404)
    c.call(server, "POST", checkout, body=big, token=ada, expect=413)
    lapsing = expect_json(*c.call(server, "POST", reserve, body={"product": "quick",
                                                                 "quantity": 1}, token=ada), 201)
    time.sleep(1.5)
    c.call(server, "POST", checkout, body=dict(paid, reservation=lapsing["id"]), token=ada,
           expect=410)

    c.call(server, "GET", "/v1/orders/{id}", {"id": order["id"]}, token=ada, expect=200)
    c.call(server, "GET", "/v1/orders/{id}", {"id": order["id"]}, token=bob, expect=404)
    c.call(server, "GET", "/v1/orders/{id}", {"id": order["id"]}, expect=401)
    c.call(server, "GET", "/v1/orders/{id}", {"id": order["id"]}, token=admin, expect=403)
    c.call(server, "GET", "/v1/me/orders", token=ada, query="?limit=10", expect=200)
    c.call(server, "GET", "/v1/me/orders", token=ada, query="?limit=0", expect=400)
    c.call(server, "GET", "/v1/me/orders", expect=401)
    c.call(server, "GET", "/v1/me/orders", token=bad, expect=401)
    c.call(server, "GET", "/v1/me/orders", query=f"?token={bad}", expect=401)
    c.call(server, "GET", "/v1/me/orders", token=admin, expect=403)
    orders = "/v1/partners/{id}/orders"
    c.call(server, "GET", orders, {"id": PARTNER}, token=partner, expect=200)
    c.call(server, "GET", orders, {"id": PARTNER}, token=partner, query="?limit=x", expect=400)
    c.call(server, "GET", orders, {"id": PARTNER}, expect=401)
    c.call(server, "GET", orders, {"id": PARTNER}, token=ada, expect=403)

    for listing, item, prefix in (("/v1/me/payment-methods", "/v1/me/payment-methods/{id}", "pm_"),
                                  ("/v1/me/addresses", "/v1/me/addresses/{id}", "addr_")):
        saved = expect_json(*c.call(server, "GET", listing, token=ada), 200)
        if not saved or not saved[0]["id"].startswith(prefix):
            raise SystemExit(f"FAIL: {listing} lists nothing after a checkout with save")
        c.call(server, "GET", listing, expect=401)
        c.call(server, "GET", listing, token=admin, expect=403)
        c.call(server, "DELETE", item, {"id": saved[0]["id"]}, expect=401)
        c.call(server, "DELETE", item, {"id": saved[0]["id"]}, token=admin, expect=403)
        c.call(server, "DELETE", item, {"id": saved[0]["id"]}, token=ada, expect=200)
        c.call(server, "DELETE", item, {"id": saved[0]["id"]}, token=ada, expect=404)

    restock = "/v1/admin/products/{id}/restock"
    c.call(server, "POST", restock, {"id": "quick"}, {"quantity": 5}, admin, expect=200)
    c.call(server, "POST", restock, {"id": "quick"}, {"quantity": "five"}, admin, expect=400)
    c.call(server, "POST", restock, {"id": "quick"}, {"quantity": 5}, expect=401)
    c.call(server, "POST", restock, {"id": "quick"}, {"quantity": 5}, ada, expect=403)
    c.call(server, "POST", restock, {"id": "no-such-product"}, {"quantity": 5}, admin, expect=404)
    c.call(server, "POST", restock, {"id": "quick"}, big, admin, expect=413)
    inventory = "/v1/admin/products/{id}/inventory"
    c.call(server, "GET", inventory, {"id": "quick"}, token=admin, expect=200)
    c.call(server, "GET", inventory, {"id": "quick"}, expect=401)
    c.call(server, "GET", inventory, {"id": "quick"}, token=ada, expect=403)
    c.call(server, "GET", inventory, {"id": "no-such-product"}, token=admin, expect=404)

    product = "/v1/admin/products/{id}"
    c.call(server, "DELETE", product, {"id": "quick"}, expect=401)
    c.call(server, "DELETE", product, {"id": "quick"}, token=ada, expect=403)
    c.call(server, "DELETE", product, {"id": "quick"}, token=admin, expect=200)
    c.call(server, "DELETE", product, {"id": "quick"}, token=admin, expect=404)

    partner_path = "/v1/admin/partners/{id}"
    ace = {"name": "Ace", "accounts": ["AceTees"], "platform": "direct", "kind": "brand"}
    c.call(server, "PUT", partner_path, {"id": "ace"}, ace, admin, expect=200)
    c.call(server, "PUT", partner_path, {"id": "ace"}, dict(ace, accounts=[]), admin, expect=400)
    c.call(server, "PUT", partner_path, {"id": "ace"}, ace, expect=401)
    c.call(server, "PUT", partner_path, {"id": "ace"}, ace, ada, expect=403)
    c.call(server, "PUT", partner_path, {"id": "ace"}, big, admin, expect=413)
    c.call(server, "DELETE", partner_path, {"id": PARTNER}, token=admin, expect=400)
    c.call(server, "DELETE", partner_path, {"id": "ace"}, expect=401)
    c.call(server, "DELETE", partner_path, {"id": "ace"}, token=ada, expect=403)
    c.call(server, "DELETE", partner_path, {"id": "ace"}, token=admin, expect=200)
    c.call(server, "DELETE", partner_path, {"id": "ace"}, token=admin, expect=404)

    tweet = {"id": "1", "author": {"id": "9", "screen_name": "Burberry", "name": "Burberry"},
             "text": "hi", "created_at": "2026-01-01T00:00:00Z", "urls": [], "hashtags": []}
    lines = json.dumps(tweet).encode() + b"\nnot json\n"
    ndjson = {"Content-Type": "application/x-ndjson"}
    c.call(server, "POST", "/v1/ingest", body=lines, token=ingest, headers=ndjson, expect=200)
    c.call(server, "POST", "/v1/ingest", body=lines, headers=ndjson, expect=401)
    c.call(server, "POST", "/v1/ingest", body=lines, token=ada, headers=ndjson, expect=403)
    c.call(server, "POST", "/v1/ingest", body=b"x" * (70 << 10), token=ingest, headers=ndjson,
           expect=413)

    c.call(server, "POST", "/v1/dev/tokens", body={"customer": "ada"}, expect=200)
    c.call(server, "POST", "/v1/dev/tokens", body={"customer": "ada", "admin": "x"}, expect=400)
    c.call(server, "POST", "/v1/dev/tokens", body=big, expect=413)


def drive_connection_cap(checker, server, secret):
    """Outside demo mode with one connection an address: with one held open, every route
    answers 429 before reading the request; and no dev tokens."""
    # The server forgets a closed connection a moment after it closes: until then, the held
    # one may be the connection refused. Hold one until a probe is refused.
    for _ in range(20):
        time.sleep(0.3)
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        time.sleep(0.2)
        if raw(server.port, "GET", "/healthz")[0] == 429:
            break
        idle.close()
    else:
        raise SystemExit("FAIL: a second connection was never refused with one held open")
    try:
        for (method, template), operation in checker.spec.operations.items():
            if "429" not in operation["responses"]:
                continue
            path = template.replace("{id}", "x")
            status, headers, data = raw(server.port, method, path)
            checker.requests += 1
            checker.check(method, template, status, headers, data, 429)
    finally:
        idle.close()
    time.sleep(0.5)
    checker.call(server, "POST", "/v1/dev/tokens", body={"customer": "ada"}, expect=404)


def start_engine(argv, port):
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"FAIL: {argv[0]} exited at start")
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"FAIL: {argv[0]} did not listen in 20 s")


def drive_unavailable(checker, binary, secret_file, secret, redis_bin, nats_bin):
    """A node on Redis and NATS, both then killed: every route that needs them answers 503."""
    work = tempfile.mkdtemp(prefix="buyline-openapi-engines-")
    redis_port, nats_port = free_port(), free_port()
    engines = []
    server = None
    try:
        engines.append(start_engine([redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1",
                                     "--dir", work, "--appendonly", "yes", "--appendfsync",
                                     "always", "--save", ""], redis_port))
        engines.append(start_engine([nats_bin, "-js", "-a", "127.0.0.1", "-p", str(nats_port),
                                     "-sd", os.path.join(work, "nats")], nats_port))
        server = Server(binary, secret_file, "--store", f"redis://127.0.0.1:{redis_port}",
                        "--bus", f"nats://127.0.0.1:{nats_port}")
        ada = token(secret, "ada", "customer")
        admin = token(secret, "root", "admin")
        partner = token(secret, PARTNER, "partner")
        ingest = token(secret, "feed", "ingest")
        # While the engines are up: a live hold, and a partner with no products.
        held = expect_json(*raw(server.port, "POST", "/v1/reservations",
                                json.dumps({"product": LIMITED, "quantity": 1}).encode(),
                                {"Authorization": f"Bearer {ada}"})[::2], 201)
        ace = {"name": "Ace", "accounts": ["AceTees"], "platform": "direct", "kind": "brand"}
        expect_json(*raw(server.port, "PUT", "/v1/admin/partners/ace", json.dumps(ace).encode(),
                         {"Authorization": f"Bearer {admin}"})[::2], 200)
        for engine in engines:
            engine.kill()
            engine.wait()
        deadline = time.time() + 30
        while raw(server.port, "GET", "/readyz")[0] != 503:
            if time.time() > deadline:
                raise SystemExit("FAIL: /readyz stayed 200 with Redis and NATS killed")
            time.sleep(0.2)
        c = checker
        c.call(server, "GET", "/readyz", expect=503)
        c.call(server, "POST", "/v1/reservations", body={"product": LIMITED, "quantity": 1},
               token=ada, expect=503)
        c.call(server, "DELETE", "/v1/reservations/{id}", {"id": held["id"]}, token=ada,
               expect=503)
        c.call(server, "POST", "/v1/orders", body={"reservation": held["id"], "shipping": ADDRESS,
                                                   "payment": CARD}, token=ada, expect=503)
        c.call(server, "GET", "/v1/orders/{id}", {"id": "ord_x"}, token=ada, expect=503)
        c.call(server, "GET", "/v1/me/orders", token=ada, expect=503)
        c.call(server, "GET", "/v1/partners/{id}/orders", {"id": PARTNER}, token=partner,
               expect=503)
        for listing, item in (("/v1/me/payment-methods", "/v1/me/payment-methods/{id}"),
                              ("/v1/me/addresses", "/v1/me/addresses/{id}")):
            c.call(server, "GET", listing, token=ada, expect=503)
            c.call(server, "DELETE", item, {"id": "x"}, token=ada, expect=503)
        quick = {"partner": PARTNER, "title": "Quick", "description": "d",
                 "image": "https://example.com/q.jpg", "price": {"amount": 5, "currency": "usd"},
                 "urls": ["https://example.com/q"], "stock": 1}
        c.call(server, "PUT", "/v1/admin/products/{id}", {"id": "quick"}, quick, admin,
               expect=503)
        c.call(server, "DELETE", "/v1/admin/products/{id}", {"id": LIMITED}, token=admin,
               expect=503)
        c.call(server, "POST", "/v1/admin/products/{id}/restock", {"id": LIMITED},
               {"quantity": 1}, admin, expect=503)
        c.call(server, "GET", "/v1/admin/products/{id}/inventory", {"id": LIMITED}, token=admin,
               expect=503)
        c.call(server, "PUT", "/v1/admin/partners/{id}", {"id": "ace"}, ace, admin, expect=503)
        c.call(server, "DELETE", "/v1/admin/partners/{id}", {"id": "ace"}, token=admin,
               expect=503)
        tweet = {"id": "2", "author": {"id": "9", "screen_name": "x", "name": "X"}, "text": "hi",
                 "created_at": "2026-01-01T00:00:00Z", "urls": [], "hashtags": []}
        c.call(server, "POST", "/v1/ingest", body=json.dumps(tweet).encode() + b"\n",
               token=ingest, headers={"Content-Type": "application/x-ndjson"}, expect=503)
    finally:
        if server is not None:
            server.stop()
        for engine in engines:
            if engine.poll() is None:
                engine.kill()
                engine.wait()
        shutil.rmtree(work, ignore_errors=True)


HOOKS = '''
import schemathesis

TOKENS = {}

schemathesis.serializer.alias("application/x-ndjson", "text/plain")


@schemathesis.auth()
class RoleTokens:
    """The token of the role each route is for, so generated requests get past auth."""

    def get(self, case, context):
        # What `set` receives: schemathesis applies nothing when this is None.
        return TOKENS

    def set(self, case, data, context):
        path = case.operation.path
        if path.startswith("/v1/admin/"):
            role = "admin"
        elif path.startswith("/v1/partners/"):
            role = "partner"
        elif path.startswith("/v1/ingest"):
            role = "ingest"
        else:
            role = "customer"
        # Both places the spec allows, so neither carries a generated (invalid) token.
        case.headers = case.headers or {}
        case.headers["Authorization"] = "Bearer " + data[role]
        if case.query and "token" in case.query:
            case.query["token"] = data[role]
'''


def run_schemathesis(binary, secret_file, secret, examples):
    st = shutil.which("st") or shutil.which("schemathesis")
    if st is None:
        missing("schemathesis (pip install schemathesis)")
    server = Server(binary, secret_file, "--max-ingest-body-bytes", str(64 << 10))
    hooks_dir = tempfile.mkdtemp(prefix="buyline-st-hooks-")
    try:
        tokens = {role: token(secret, PARTNER if role == "partner" else "fuzz", role)
                  for role in ("customer", "partner", "admin", "ingest")}
        with open(os.path.join(hooks_dir, "buyline_st_hooks.py"), "w") as f:
            f.write(HOOKS.replace("TOKENS = {}", f"TOKENS = {json.dumps(tokens)}"))
        env = dict(os.environ, SCHEMATHESIS_HOOKS="buyline_st_hooks",
                   PYTHONPATH=hooks_dir + os.pathsep + os.environ.get("PYTHONPATH", ""))
        # Left out everywhere: positive_data_acceptance, because the server counts a text's
        # limit in bytes of UTF-8 and JSON Schema in characters; ignored_auth, because the role
        # tokens come from a hook that schemathesis takes for generated ones (the drive above
        # checks that every route refuses a missing token, and that a forged one is refused).
        # The ingest POST also leaves out negative_data_rejection: by the contract a line that
        # is not a tweet is rejected in a 200's `errors`, never by the status.
        common = ["--url", f"http://127.0.0.1:{server.port}", "--checks", "all",
                  "--max-examples", str(examples), "--workers", "1", "--seed", "1",
                  "--suppress-health-check", "all", "--no-color"]
        runs = [
            ["--exclude-checks", "positive_data_acceptance,ignored_auth",
             "--exclude-operation-id", "stream", "--exclude-operation-id", "ingestStream",
             "--exclude-operation-id", "ingest"],
            ["--exclude-checks", "positive_data_acceptance,ignored_auth,negative_data_rejection",
             "--include-operation-id", "ingest"],
        ]
        failed = 0
        for selection in runs:
            argv = [st, "run", SPEC, *common, *selection]
            print("check_openapi: " + " ".join(argv[1:]), flush=True)
            # Run in the temp dir: schemathesis writes a cache where it runs.
            result = subprocess.run(argv, env=env, cwd=hooks_dir, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            print(result.stdout[-6000:])
            if server.process.poll() is not None:
                raise SystemExit(f"FAIL: the server died under schemathesis: {server.tail()}")
            failed += result.returncode != 0
        return failed
    finally:
        server.stop()
        shutil.rmtree(hooks_dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary")
    parser.add_argument("--examples", type=int, default=25)
    args = parser.parse_args()
    spec = Spec(SPEC)
    checker = Checker(spec)
    work = tempfile.mkdtemp(prefix="buyline-openapi-secret-")
    secret = os.urandom(24).hex().encode()
    secret_file = os.path.join(work, "secret.key")
    with open(secret_file, "wb") as f:
        f.write(secret)
    os.chmod(secret_file, 0o600)
    try:
        server = Server(args.binary, secret_file, "--max-ingest-body-bytes", str(64 << 10))
        try:
            drive_defaults(checker, server, secret)
        finally:
            server.stop()
        server = Server(args.binary, secret_file, "--no-demo", "--max-connections-per-ip", "1")
        try:
            drive_connection_cap(checker, server, secret)
        finally:
            server.stop()
        redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
        nats_bin = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not (os.access(redis_bin, os.X_OK) and os.access(nats_bin, os.X_OK)):
            missing("redis-server or nats-server (the 503 answers need them)")
        drive_unavailable(checker, args.binary, secret_file, secret, redis_bin, nats_bin)

        undriven = sorted(spec.documented() - checker.driven)
        for operation, status in undriven:
            checker.failures.append(f"{operation}: documented {status}, never driven")
        print(f"check_openapi: {checker.requests} requests, "
              f"{len(checker.driven & spec.documented())} of {len(spec.documented())} "
              "documented (operation, status) pairs driven")
        if checker.failures:
            print("\n".join(f"FAIL: {failure}" for failure in checker.failures))
            return 1
        return 0 if run_schemathesis(args.binary, secret_file, secret, args.examples) == 0 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
