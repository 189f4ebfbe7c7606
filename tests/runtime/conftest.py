# the test certificates (a CA, a server and a client with an encrypted key) of the transport tests
from tests.transport.conftest import CLIENT_KEY_PASSWORD, Certs, certs  # noqa: F401
