"""A function for the OFFICIAL StateFun Python SDK (served by tests/e2e/official_server.py, which makes
``pystatefun`` the official ``statefun``): ``ko/emitter`` takes a JSON list of records and emits each with
``kinesis_egress_message`` exactly as given::

    [{"egress": typename, "stream": name, "value": {"text": str} | {"hex": bytes as hex},
      "partition_key": str, "explicit_hash_key": str or null (not given)}, ...]
"""

import json

from pystatefun import StatefulFunctions, kinesis_egress_message

functions = StatefulFunctions()


@functions.bind("ko/emitter")
def emitter(context, message):
    for record in json.loads(message.raw_value().decode("utf-8")):
        value = record["value"]["text"] if "text" in record["value"] else bytes.fromhex(record["value"]["hex"])
        arguments = {"typename": record["egress"], "stream": record["stream"], "value": value,
                     "partition_key": record["partition_key"]}
        if record["explicit_hash_key"] is not None:
            arguments["explicit_hash_key"] = record["explicit_hash_key"]
        context.send_egress(kinesis_egress_message(**arguments))
