"""Counts each user's clicks, read from the Kinesis stream ``clicks`` (partition key = user id, data =
the page's name), and puts every new count on the stream ``click-counts`` as JSON, keyed by the user."""

import json

from pystatefun import IntType, StatefulFunctions, ValueSpec, kinesis_egress_message, simple_type

# the ingress gives each record's data this type (valueType in module.yaml): the page's name as text
PAGE_TYPE = simple_type("example/page", serialize_fn=str.encode, deserialize_fn=bytes.decode)

functions = StatefulFunctions()


@functions.bind("example/clicks", specs=[ValueSpec("clicks", IntType)])
def clicks(context, message):
    count = (context.storage.clicks or 0) + 1
    context.storage.clicks = count
    user = context.address.id
    count_record = {"user": user, "clicks": count, "last_page": message.as_type(PAGE_TYPE)}
    context.send_egress(kinesis_egress_message(typename="example/click-counts", stream="click-counts",
                                               partition_key=user, value=json.dumps(count_record)))
