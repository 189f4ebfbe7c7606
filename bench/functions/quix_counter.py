"""The same keyed counter in Quix Streams (run with its own virtualenv's python), exactly-once:
``quix_counter.py BOOTSTRAP GROUP IN OUT COMMIT_INTERVAL``."""

import sys

from quixstreams import Application

bootstrap, group, source, out, commit_interval = sys.argv[1:6]
app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                  processing_guarantee="exactly-once", commit_interval=float(commit_interval))
source_topic = app.topic(source, key_deserializer="str", value_deserializer="bytes")
out_topic = app.topic(out, key_serializer="str", value_serializer="bytes")


def count(value: bytes, state) -> bytes:
    n = state.get("count", 0) + 1
    state.set("count", n)
    return f"{n}|{value.decode().partition('|')[2]}".encode()


sdf = app.dataframe(source_topic)
sdf = sdf.apply(count, stateful=True)
sdf.to_topic(out_topic)
app.run()
