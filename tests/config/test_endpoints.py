"""io.statefun.endpoints.v2/http and v1/http: selectors, URLs, transports, TLS files and retry."""

from datetime import timedelta

import pytest

from pystatefun.config import FunctionSelector, HttpEndpoint, RetryPolicy, TransportSpec, unix_socket_target


def test_v2_minimal_gets_the_async_transport_defaults(files):
    module = files.load(
        """
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: example/*
          urlPathTemplate: http://functions:8000/statefun
        """
    )
    (endpoint,) = module.endpoints
    assert endpoint.kind == "io.statefun.endpoints.v2/http"
    assert endpoint.functions == FunctionSelector("example", None)
    assert endpoint.max_num_batch_requests == 1000
    assert endpoint.retry is None
    assert endpoint.transport == TransportSpec(
        type="async",
        call=timedelta(minutes=2),
        connect=timedelta(seconds=20),
        read=None,
        write=None,
        pool_ttl=timedelta(seconds=15),
        pool_size=1024,
        payload_max_bytes=32 * 1024 * 1024,
    )
    assert endpoint.transport.typename == "io.statefun.transports.v1/async"
    assert endpoint.origin == "document 1 (io.statefun.endpoints.v2/http)"


def test_v2_full_async_transport(files):
    files.write("CA", "certs/ca.pem")
    files.write("CERT", "certs/client.pem")
    files.write("KEY", "certs/client.key")
    files.write("secret", "certs/password.txt")
    module = files.load(
        """
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: example/greeter
          urlPathTemplate: https://functions.example.com:8443/{function.name}
          maxNumBatchRequests: 50
          transport:
            type: io.statefun.transports.v1/async
            call: 1 min
            connect: 5s
            pool_ttl: 0
            pool_size: 64
            payload_max_bytes: 1048576
            trust_cacerts: certs/ca.pem
            client_cert: ./certs/client.pem
            client_key: certs/client.key
            client_key_password: certs/password.txt
          retry:
            max_attempts: 5
            function_error_max_attempts: 40
            initial_backoff: 20ms
            max_backoff: 2s
            retryable_status: [429, 503]
        """
    )
    (endpoint,) = module.endpoints
    certs = files.folder / "certs"
    assert endpoint.functions == FunctionSelector("example", "greeter")
    assert endpoint.max_num_batch_requests == 50
    assert endpoint.transport == TransportSpec(
        type="async",
        call=timedelta(minutes=1),
        connect=timedelta(seconds=5),
        pool_ttl=timedelta(0),
        pool_size=64,
        payload_max_bytes=1048576,
        trust_cacerts=certs / "ca.pem",
        client_cert=certs / "client.pem",
        client_key=certs / "client.key",
        client_key_password=certs / "password.txt",
    )
    assert endpoint.retry == RetryPolicy(
        max_attempts=5, function_error_max_attempts=40, initial_backoff=timedelta(milliseconds=20),
        max_backoff=timedelta(seconds=2), retryable_status=(429, 503),
    )
    assert endpoint.url_for("greeter") == "https://functions.example.com:8443/greeter"


def test_retry_defaults(files):
    module = files.load(
        """
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: example/*
          urlPathTemplate: http://functions:8000/
          retry: {}
        """
    )
    retry = module.endpoints[0].retry
    assert retry == RetryPolicy()
    assert retry.max_attempts is None
    assert retry.function_error_max_attempts == 3  # a function that raises parks its address at once
    assert retry.initial_backoff == timedelta(milliseconds=10)
    assert retry.max_backoff == timedelta(seconds=5)
    assert retry.retryable_status[:2] == (408, 429) and set(range(500, 600)) <= set(retry.retryable_status)


def test_function_error_max_attempts_null_means_no_limit_as_in_statefun(files):
    module = files.load(
        """
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: example/*
          urlPathTemplate: http://functions:8000/
          retry:
            function_error_max_attempts: null
        """
    )
    assert module.endpoints[0].retry.function_error_max_attempts is None


def test_retry_is_validated(files):
    error = files.error(
        """
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: example/*
          urlPathTemplate: http://functions:8000/
          retry:
            max_attempts: 0
            function_error_max_attempts: 0
            max_backoff: 1ms
            retryable_status: [200, 503, nope]
            jitter: true
        """
    )
    text = str(error)
    assert "spec.retry.max_attempts: 0 is too small: use a number from 1 to 10000" in text
    assert "spec.retry.function_error_max_attempts: 0 is too small: use a number from 1 to 10000" in text
    assert "spec.retry.retryable_status[0]: 200 is too small: use a number from 400 to 599" in text
    assert "spec.retry.retryable_status[2]: expected a whole number, got the string 'nope'" in text
    assert "spec.retry.jitter: unknown key 'jitter'" in text
    assert "spec.retry: max_backoff (1 ms) is shorter than initial_backoff (10 ms)" in text


def test_legacy_nested_timeouts_win_with_their_own_defaults(files):
    module = files.load(
        """
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: example/*
          urlPathTemplate: http://functions:8000/
          transport:
            timeouts:
              connect: 3s
        """
    )
    transport = module.endpoints[0].transport
    assert transport.type == "async"
    assert transport.connect == timedelta(seconds=3)
    assert transport.call == timedelta(minutes=1)  # StateFun's Timeouts default, not the top-level 2 min


def test_a_top_level_timeout_beside_the_nested_form_is_reported_as_ignored(files):
    problem = files.problem(
        """
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: example/*
          urlPathTemplate: http://functions:8000/
          transport:
            call: 5 min
            timeouts:
              call: 1 min
        """
    )
    assert "document 1 (io.statefun.endpoints.v2/http): spec.transport.call: ignored by StateFun because 'timeouts' is given" in problem
    assert "timeouts.call or call" in problem


def test_v2_okhttp_transport(files):
    module = files.load(
        """
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: example/*
          urlPathTemplate: http://functions:8000/
          transport:
            type: io.statefun.transports.v1/okhttp
            timeouts:
              call: 2 min
              read: 30 s
        """
    )
    transport = module.endpoints[0].transport
    assert transport == TransportSpec(
        type="okhttp",
        call=timedelta(minutes=2),
        connect=timedelta(seconds=10),
        read=timedelta(seconds=30),
        write=timedelta(seconds=10),
        pool_ttl=timedelta(minutes=1),
    )
    assert transport.typename == "io.statefun.transports.v1/okhttp"


def test_okhttp_rejects_async_keys_and_checks_timeouts(files):
    error = files.error(
        """
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: example/*
          urlPathTemplate: http://functions:8000/
          transport:
            type: io.statefun.transports.v1/okhttp
            pool_size: 10
            timeouts:
              call: 5s
              write: 0
        """
    )
    text = str(error)
    assert "spec.transport.pool_size: key 'pool_size' is not allowed here: only the async transport" in text
    assert "spec.transport.timeouts.write: must be longer than 0" in text
    assert "spec.transport.timeouts.connect: connect (10 s, the default) is longer than call (5 s): OkHttp requires connect <= call" in text
    assert "spec.transport.timeouts.read: read (10 s, the default) is longer than call (5 s)" in text


def test_v1_endpoint_is_okhttp_with_top_level_timeouts(files):
    module = files.load(
        """
        kind: io.statefun.endpoints.v1/http
        spec:
          functions: example/*
          urlPathTemplate: http://functions:8000/{function.name}
          maxNumBatchRequests: 0
          timeouts:
            call: 3 min
            connect: 1 s
            read: 40 s
            write: 1 min
        """
    )
    (endpoint,) = module.endpoints
    assert endpoint.kind == "io.statefun.endpoints.v1/http"
    assert endpoint.max_num_batch_requests == 0
    assert endpoint.transport == TransportSpec(
        type="okhttp",
        call=timedelta(minutes=3),
        connect=timedelta(seconds=1),
        read=timedelta(seconds=40),
        write=timedelta(minutes=1),
        pool_ttl=timedelta(minutes=1),
    )


def test_v1_minimal_gets_okhttp_defaults(files):
    module = files.load(
        """
        kind: io.statefun.endpoints.v1/http
        spec:
          functions: example/greeter
          urlPathTemplate: http://functions:8000/
        """
    )
    assert module.endpoints[0].transport == TransportSpec.okhttp_defaults()
    assert module.endpoints[0].transport.call == timedelta(minutes=1)


def test_v1_has_no_transport_and_v2_no_top_level_timeouts(files):
    error = files.error(
        """
        kind: io.statefun.endpoints.v1/http
        spec:
          functions: a/*
          urlPathTemplate: http://functions:8000/
          transport: {type: io.statefun.transports.v1/async}
        ---
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: b/*
          urlPathTemplate: http://functions:8000/
          timeouts: {call: 1 min}
        """
    )
    assert len(error.problems) == 2
    assert "document 1 (io.statefun.endpoints.v1/http): spec.transport: key 'transport' is not allowed here: io.statefun.endpoints.v1/http always uses OkHttp" in str(error)
    assert "document 2 (io.statefun.endpoints.v2/http): spec.timeouts: key 'timeouts' is not allowed here: in io.statefun.endpoints.v2/http timeouts go under 'transport'" in str(error)


def test_unknown_transport_type(files):
    problem = files.problem(
        """
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: a/*
          urlPathTemplate: http://functions:8000/
          transport: {type: okhttp}
        """
    )
    assert "spec.transport.type: 'okhttp' is not one of: io.statefun.transports.v1/async, io.statefun.transports.v1/okhttp" in problem


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("example", "'example' is not a function type pattern: write '<namespace>/<name>' or '<namespace>/*'"),
        ("a/b/c", "'a/b/c' is not a function type pattern"),
        ("/name", "is not a function type pattern"),
        ("*/greeter", "'*/greeter': '*' may only stand for the whole name"),
        ("exa*mple/*", "'*' may only stand for the whole name"),
        ("example/greet*", "'example/greet*': '*' may only stand for the whole name, as in 'example/*'"),
    ],
)
def test_function_selector_errors(files, pattern, message):
    problem = files.problem(
        f"""
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: "{pattern}"
          urlPathTemplate: http://functions:8000/
        """
    )
    assert "module.yaml, document 1 (io.statefun.endpoints.v2/http): spec.functions: " in problem
    assert message in problem


def test_function_selector_matching():
    namespace = FunctionSelector.parse("example/*")
    exact = FunctionSelector.parse("example/greeter")
    assert namespace.is_namespace and not exact.is_namespace
    assert namespace.matches("example/greeter") and namespace.matches("example/other")
    assert not namespace.matches("examples/greeter") and not namespace.matches("other/greeter")
    assert exact.matches("example/greeter") and not exact.matches("example/greeter2")
    assert str(namespace) == "example/*" and str(exact) == "example/greeter"
    with pytest.raises(ValueError):
        FunctionSelector.parse("ex*/foo")


def test_url_for_replaces_the_placeholder_everywhere():
    endpoint = HttpEndpoint(functions=FunctionSelector("ns", None), url_path_template="http://{function.name}.svc:8000/fn/{function.name}")
    assert endpoint.url_for("greeter") == "http://greeter.svc:8000/fn/greeter"
    plain = HttpEndpoint(functions=FunctionSelector("ns", None), url_path_template="http://functions:8000/statefun")
    assert plain.url_for("greeter") == "http://functions:8000/statefun"


@pytest.mark.parametrize(
    "url",
    [
        "http://functions:8000/statefun",
        "https://functions/{function.name}",
        "http://{function.name}.functions.svc/",
        "http+unix:///var/run/functions.sock/statefun",
        "https+unix:///tmp/fn.sock",
        "http+unix:///run/{function.name}.sock/x",
        "HTTP://functions/",
    ],
)
def test_accepted_urls(files, url):
    module = files.load(
        f"""
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: example/*
          urlPathTemplate: "{url}"
        """
    )
    assert module.endpoints[0].url_path_template == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://functions/", "has the scheme 'ftp': use an http, https, http+unix or https+unix URL"),
        ("functions:8000/statefun", "has the scheme 'functions'"),
        ("/statefun", "has no scheme"),
        ("http:///statefun", "has no host"),
        ("http://functions:99999/", "has an invalid port"),
        ("http://functions/{function.namespace}", "the only placeholder is {function.name}"),
        ("http+unix:///var/run/functions/statefun", "a +unix URL names the socket file in its path"),
    ],
)
def test_rejected_urls(files, url, message):
    problem = files.problem(
        f"""
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: example/*
          urlPathTemplate: "{url}"
        """
    )
    assert "spec.urlPathTemplate: " in problem and message in problem


def test_unix_socket_target_splits_socket_and_path():
    assert unix_socket_target("http+unix:///var/run/fn.sock/statefun/x") == ("/var/run/fn.sock", "/statefun/x")
    assert unix_socket_target("http+unix:///tmp/fn.sock") == ("/tmp/fn.sock", "/")
    with pytest.raises(ValueError, match=r"\.sock"):
        unix_socket_target("http+unix:///tmp/fn/statefun")


def test_tls_files_by_file_url_and_absolute_path(files, tmp_path):
    ca = files.write("CA", "ca.pem")
    cert = files.write("CERT", "dir with space/client.pem")
    key = files.write("KEY", "client.key")
    module = files.load(
        f"""
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: example/*
          urlPathTemplate: https://functions/
          transport:
            trust_cacerts: {ca}
            client_cert: "file://{cert.as_uri()[len('file://'):]}"
            client_key: "file:client.key"
        """
    )
    transport = module.endpoints[0].transport
    assert transport.trust_cacerts == ca
    assert transport.client_cert == cert
    assert transport.client_key == key


def test_tls_file_problems(files):
    files.write("CERT", "client.pem")
    error = files.error(
        """
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: example/*
          urlPathTemplate: https://functions/
          transport:
            trust_cacerts: classpath:certs/ca.pem
            client_cert: client.pem
            client_key_password: missing/password.txt
        """
    )
    text = str(error)
    assert "spec.transport.trust_cacerts: 'classpath:certs/ca.pem': there is no Java classpath in pystatefun" in text
    assert f"spec.transport.client_key_password: file not found: {files.folder / 'missing/password.txt'} (relative to {files.folder})" in text
    assert "spec.transport: client_cert and client_key go together" in text
    assert "spec.transport: client_key_password is the password of client_key" in text


def test_async_transport_values_are_checked(files):
    error = files.error(
        """
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: example/*
          urlPathTemplate: http://functions/
          maxNumBatchRequests: lots
          transport:
            call: 0
            connect: 2 fortnights
            pool_size: 0
            payload_max_bytes: -1
            read: 1s
        """
    )
    text = str(error)
    assert "spec.maxNumBatchRequests: expected a whole number, got the string 'lots'" in text
    assert "spec.transport.call: must be longer than 0" in text
    assert (
        "module.yaml, document 1 (io.statefun.endpoints.v2/http): spec.transport.connect: "
        "invalid duration '2 fortnights' (use e.g. '2 min', '30s', '500ms')"
    ) in text
    assert "spec.transport.pool_size: 0 is too small: use a number from 1 to 65536" in text
    assert "spec.transport.payload_max_bytes: -1 is too small" in text
    assert "spec.transport.read: key 'read' is not allowed here: only the okhttp transport has it" in text
    assert len(error.problems) == 6
