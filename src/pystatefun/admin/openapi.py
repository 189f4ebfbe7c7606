"""The OpenAPI 3.1 document of the admin API, served at ``GET /openapi.json``."""

from __future__ import annotations

import typing

_ADDRESS = [
    {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
    for name in ("namespace", "type", "id")
]
_PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
]
_ERROR = {"description": "the reason, as {\"error\": \"...\"}",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_STATE = {"description": "the address's states",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AddressState"}}}}


def _json(description: str, schema: dict[str, typing.Any] | None = None) -> dict[str, typing.Any]:
    return {"description": description, "content": {"application/json": {"schema": schema or {"type": "object"}}}}


OPENAPI: dict[str, typing.Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "pystatefun admin API",
        "version": "1",
        "description": "Inspect and repair a running pystatefun application. With --admin-token, every "
                       "route but /health and /metrics needs 'Authorization: Bearer <token>'. Served on loopback "
                       "it answers only requests whose Host is localhost, 127.0.0.1 or [::1] with its port (421 "
                       "otherwise); a request with an Origin other than its own, or with Sec-Fetch-Site "
                       "cross-site or same-site, is refused with 403.",
    },
    "paths": {
        "/": {"get": {"summary": "An index of these routes and where this document is", "responses": {
            "200": _json("name, openapi (the path of this document), routes (method, path, summary)")}}},
        "/health": {"get": {"summary": "Whether the runtime processes", "responses": {
            "200": _json("running: status (ok, or unavailable with a reason while the disk is full), pid, "
                         "uptime_seconds, partitions, epochs_committed, parked_addresses, failing_endpoints (remote "
                         "endpoints whose calls fail now); with Kafka ingresses or egresses also kafka_ingresses "
                         "(records, bad_records, stopped_partitions) and kafka_egresses (delivery_semantic, forwarded)"),
            "503": _json("stopping")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics; function_type labels name the first 200 function types, the rest are summed under other", "responses": {
            "200": {"description": "text exposition format", "content": {"text/plain": {}}}}}},
        "/functions": {"get": {"summary": "Function bindings, function types with their state specs, remote endpoint "
                                          "health, and the types a remote endpoint answered 404 for (unregistered: "
                                          "seconds the ingress still refuses each)",
                               "responses": {"200": _json("the bindings", {"type": "array", "items": {"type": "object"}})}}},
        "/functions/{namespace}/{type}": {"get": {
            "summary": "One function type: its endpoint and health, calls, failures, latency, batch sizes and "
                       "addresses (on Kafka over every worker)",
            "parameters": _ADDRESS[:2],
            "responses": {"200": _json("the function type", {"$ref": "#/components/schemas/FunctionType"}),
                          "404": _ERROR, "502": _ERROR}}},
        "/overview": {"get": {
            "summary": "The application at a glance: workers and their partitions, epochs per second, commit latency, "
                       "message, ingress and egress rates, Kafka ingress lag, parked addresses and dead letters; rates "
                       "over the last 10 s (on Kafka summed over every worker)",
            "responses": {"200": _json("the overview", {"$ref": "#/components/schemas/Overview"}), "502": _ERROR}}},
        "/graph": {"get": {
            "summary": "The function graph: function types, ingresses and egresses, and the message flows the runtime "
                       "counted between them, with their rates over the last 10 s (on Kafka over every worker)",
            "responses": {"200": _json("nodes and edges", {"$ref": "#/components/schemas/Graph"}), "502": _ERROR}}},
        "/addresses/{namespace}/{type}": {"get": {
            "summary": "Ids of a function type that have committed state, in order",
            "parameters": [*_ADDRESS[:2], {"name": "after", "in": "query", "schema": {"type": "string"}}, *_PAGE],
            "responses": {"200": _json("a page: function_type, ids, and next when there may be more"), "404": _ERROR}}},
        "/state/{namespace}/{type}/{id}": {
            "parameters": _ADDRESS,
            "get": {"summary": "The address's states", "responses": {"200": _STATE, "404": _ERROR}},
            "put": {"summary": "Write states, checked against the registered specs; answers once committed",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "additionalProperties": {"$ref": "#/components/schemas/StateInput"}}}}},
                    "responses": {"200": _STATE, "400": _ERROR, "404": _ERROR}},
            "delete": {"summary": "Delete all states, or ?name=N; answers once committed",
                       "parameters": [{"name": "name", "in": "query", "schema": {"type": "string"}}],
                       "responses": {"200": _STATE, "404": _ERROR}},
        },
        "/delayed/{namespace}/{type}/{id}": {"get": {
            "summary": "Pending delayed messages the address sent", "parameters": _ADDRESS,
            "responses": {"200": _json("timer_id, due_at_ms, cancellation_token, target, typename, value_base64, value",
                                       {"type": "array", "items": {"type": "object"}})}}},
        "/delayed/{namespace}/{type}/{id}/{timer_id}": {"delete": {
            "summary": "Cancel one pending delayed message; answers once committed",
            "parameters": [*_ADDRESS, {"name": "timer_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {"200": _json("{cancelled: timer_id}"), "404": _ERROR}}},
        "/parked": {"get": {
            "summary": "Parked addresses in address order; a page shorter than limit is the last",
            "parameters": [{"name": "after", "in": "query", "schema": {"type": "string", "default": ""},
                            "description": "only addresses after this one (the last address of the previous page)"},
                           *_PAGE],
            "responses": {"200": _json("address, reason, waiting_messages", {"type": "array", "items": {"type": "object"}}),
                          "400": _ERROR}}},
        "/parked/{namespace}/{type}/{id}/{action}": {"post": {
            "summary": "resume: retry from the failed message; skip: that message becomes a dead letter",
            "parameters": [*_ADDRESS, {"name": "action", "in": "path", "required": True,
                                       "schema": {"type": "string", "enum": ["resume", "skip"]}}],
            "responses": {"200": _json("address, resumed, skipped"), "404": _ERROR}}},
        "/dead-letters": {"get": {
            "summary": "Dead letters, oldest first",
            "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer", "default": 0}}, *_PAGE],
            "responses": {"200": _json("seq, target, caller, typename, value_base64, reason, at_ms",
                                       {"type": "array", "items": {"type": "object"}}), "400": _ERROR}}},
        "/dead-letters/{seq}/replay": {"post": {
            "summary": "Send a dead letter again to its target (with its caller), once its cause is fixed: exactly "
                       "once however often it is asked, also concurrently (kept as an idempotency record of its own "
                       "that never expires); the message is durable when answered",
            "parameters": [{"name": "seq", "in": "path", "required": True, "schema": {"type": "integer"},
                            "description": "the dead letter's seq, from GET /dead-letters"}],
            "responses": {
                "202": _json("sent: seq, target, replayed (true)", {"$ref": "#/components/schemas/Replay"}),
                "200": _json("replayed before, so not sent again: seq, target, replayed (false), already_replayed "
                             "(true)", {"$ref": "#/components/schemas/Replay"}),
                "400": _ERROR,
                "404": {**_ERROR, "description": "no dead letter has this seq, or its target's function type is not "
                                                 "bound (its cause is not fixed): as {\"error\": \"...\"}"},
                "409": {**_ERROR, "description": "a record for an egress or a reply nobody waits for, not a message to "
                                                 "send again: as {\"error\": \"...\"}"},
                "507": {**_ERROR, "description": "the runtime cannot store messages now (a full disk); Retry-After"}}}},
        "/messages/{namespace}/{type}/{id}": {"post": {
            "summary": "Send a message to an address, taken exactly as the HTTP ingress takes it (the same checks, "
                       "Idempotency-Key and ?wait request/reply); accepted once durable",
            "parameters": [*_ADDRESS,
                           {"name": "wait", "in": "query", "schema": {"type": "number", "exclusiveMinimum": 0,
                                                                      "maximum": 300},
                            "description": "seconds to wait for the function's reply"},
                           {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"},
                            "description": "the ingress's key: a retry with it is not applied again"},
                           {"name": "Content-Type", "in": "header", "required": True,
                            "schema": {"type": "string", "pattern": "^application/vnd\\..+/.+"},
                            "description": "application/vnd.<namespace>/<name>: the message's type"}],
            "requestBody": {"required": True, "content": {"application/vnd.{namespace}/{name}": {
                "schema": {"type": "string", "format": "binary",
                           "description": "the message's bytes, as the ingress takes them (for a built-in type, "
                                          "the protobuf encoding of its wrapper)"}}}},
            "responses": {
                "202": _json("accepted: address, accepted (true)"),
                "200": _json("with ?wait, the function's reply: address, reply (typename, value_base64, value when "
                             "the bytes decode)"),
                "400": _ERROR, "404": _ERROR, "415": _ERROR,
                "500": {**_ERROR, "description": "with ?wait: the message was accepted but its address is parked"},
                "504": {**_ERROR, "description": "with ?wait: no reply in time; the message was accepted"},
                "507": {**_ERROR, "description": "the runtime cannot store messages now (a full disk); Retry-After"}}}},
        "/savepoints": {"post": {
            "summary": "Takes a savepoint of the application (embedded backend): online, or with stop the last one "
                       "before it stops, the cut to move or upgrade from (docs/savepoints.md)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["path"], "properties": {
                    "path": {"type": "string", "description": "a local path of the runtime's machine, file://, or s3://"},
                    "stop": {"type": "boolean", "default": False,
                             "description": "stop the application and take the savepoint at its last commit"}}}}}},
            "responses": {"201": _json("the savepoint's manifest: format_version, application, source_backend, "
                                       "partitions, created_at, mode, counts, checksum"),
                          "400": _ERROR, "409": _ERROR}}},
    },
    "components": {"schemas": {
        "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
        "StateValue": {"type": "object", "properties": {
            "typename": {"type": "string"}, "value_base64": {"type": "string"},
            "value": {"description": "the decoded value, for built-in and JSON types"},
            "expires_at_ms": {"type": ["integer", "null"]}}},
        "AddressState": {"type": "object", "properties": {
            "address": {"type": "string"},
            "state": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/StateValue"}}}},
        "StateInput": {"type": "object", "description": "exactly one of value (built-in and JSON types) or value_base64",
                       "properties": {"value": {}, "value_base64": {"type": "string"}}},
        "FunctionType": {"type": "object", "properties": {
            "typename": {"type": "string"},
            "endpoint": {"type": "string", "description": "embedded, or the URL its calls go to"},
            "health": {"type": "string", "description": "a remote endpoint's: ok, failing or unknown (not called yet); "
                                                        "ok for an embedded function"},
            "calls": {"type": "integer", "description": "batches run since the process started (summed over the workers)"},
            "failures": {"type": "integer", "description": "batches that failed and parked their address"},
            "error_rate": {"type": "number", "description": "failures / calls (0 without calls)"},
            "latency_ms": {"$ref": "#/components/schemas/Percentiles",
                           "description": "how long a batch took, over the last 1,024 batches of each worker"},
            "batch_size": {"type": "object", "description": "mean (messages per call) and max, null without calls",
                           "properties": {"mean": {"type": ["number", "null"]}, "max": {"type": ["integer", "null"]}}},
            "addresses": {"type": ["integer", "null"],
                          "description": "addresses with committed state; null beyond 10,000 (it is not counted further)"}}},
        "Percentiles": {"type": "object", "description": "in milliseconds; null without samples", "properties": {
            "p50": {"type": ["number", "null"]}, "p99": {"type": ["number", "null"]}}},
        "Overview": {"type": "object", "properties": {
            "backend": {"type": "string", "enum": ["embedded", "kafka"]},
            "application": {"type": "string", "description": "the Kafka application, or the data dir's name"},
            "uptime_s": {"type": "number", "description": "of the process that answers"},
            "workers": {"type": "array", "description": "worker (id; the host name on the embedded backend), "
                                                        "partitions (the ones it runs), admin (its admin API's URL)",
                        "items": {"type": "object"}},
            "partitions": {"type": "integer", "description": "the application's partitions"},
            "epochs_per_s": {"type": "number", "description": "epochs committed (with anything in them)"},
            "commit_latency_ms": {"$ref": "#/components/schemas/Percentiles",
                                  "description": "over the commits of the last 10 s, of every worker"},
            "messages_per_s": {"type": "number", "description": "messages sent to functions, from ingresses and functions"},
            "ingress_per_s": {"type": "number", "description": "messages from ingresses"},
            "egress_per_s": {"type": "number", "description": "records to egresses"},
            "lag": {"type": "array", "description": "per Kafka ingress topic partition: ingress, topic, partition, lag "
                                                    "(records after the read position)",
                    "items": {"type": "object"}},
            "parked": {"type": "integer", "description": "parked addresses"},
            "dead_letters": {"type": "integer", "description": "dead letters kept"}}},
        "Graph": {"type": "object", "properties": {
            "nodes": {"type": "array", "description": "id (function:TYPE, ingress:ID or egress:ID), kind (function, "
                                                      "ingress or egress), name; the module's ingresses, egresses and "
                                                      "function types, and any other end of a flow",
                      "items": {"type": "object"}},
            "edges": {"type": "array", "description": "from and to (node ids), messages (since the process started, "
                                                      "summed over the workers) and per_s (the last 10 s); the function "
                                                      "types after the first 200 are counted as function:other",
                      "items": {"type": "object"}}}},
        "Replay": {"type": "object", "required": ["seq", "target", "replayed"], "properties": {
            "seq": {"type": "integer"}, "target": {"type": "string", "description": "namespace/type/id"},
            "replayed": {"type": "boolean", "description": "sent now (false: it had been replayed already)"},
            "already_replayed": {"type": "boolean"}}},
    }},
}
