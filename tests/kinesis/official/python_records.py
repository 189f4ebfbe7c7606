"""Builds Kinesis egress records with the OFFICIAL StateFun Python SDK (run with its virtualenv's python):
reads cases as JSON on stdin, writes one JSON object per case on stdout, in the order given::

    {"egress": <the EgressMessage's typename>, "typed_value": <hex of the serialized TypedValue>}

A case is ``{"typename", "stream", "value": {"text": str} | {"hex": bytes as hex}, "partition_key",
"explicit_hash_key": str or null}``; null means the argument is not given at all.
"""

import json
import sys

from statefun import kinesis_egress_message

results = []
for case in json.load(sys.stdin):
    value = case["value"]["text"] if "text" in case["value"] else bytes.fromhex(case["value"]["hex"])
    arguments = {"typename": case["typename"], "stream": case["stream"], "value": value,
                 "partition_key": case["partition_key"]}
    if case["explicit_hash_key"] is not None:
        arguments["explicit_hash_key"] = case["explicit_hash_key"]
    message = kinesis_egress_message(**arguments)
    results.append({"egress": message.typename, "typed_value": message.typed_value.SerializeToString().hex()})
json.dump(results, sys.stdout)
