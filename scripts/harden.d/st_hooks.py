"""Schemathesis hooks for Warden's media types (loaded through SCHEMATHESIS_HOOKS).

Without them schemathesis cannot send a body to the two operations that take a certificate
request (`application/pkcs10` or `application/x-pem-file`), so it would not test them at all, and
it skips the schema check of responses in PEM, NDJSON, CSV and server-sent-event form. Every one
of these is text, and Warden's OpenAPI document describes each as `type: string`, so the plain
text serializer and a text deserializer are the faithful choice. A DER revocation list is bytes;
it is handed to the schema check as Latin-1 text so that any byte sequence is a string of the
same length.
"""

import schemathesis

schemathesis.serializer.alias(["application/pkcs10", "application/x-pem-file"], "text/plain")


@schemathesis.deserializer(
    "application/pem-certificate-chain",
    "application/x-pem-file",
    "application/x-ndjson",
    "text/csv",
    "text/event-stream",
)
def as_text(ctx, response):
    return response.content.decode("utf-8")


@schemathesis.deserializer("application/pkix-crl")
def as_bytes(ctx, response):
    return response.content.decode("latin-1")
