"""The example's streams on a local Kinesis emulator (KINESIS_ENDPOINT, default http://127.0.0.1:4566):

    python examples/kinesis/streams.py create            # the streams clicks (2 shards) and click-counts
    python examples/kinesis/streams.py click alice home  # a click of alice on the page home
    python examples/kinesis/streams.py counts            # what the application put on click-counts
"""

from __future__ import annotations

import os
import sys
import time

import botocore.session


def client():
    return botocore.session.get_session().create_client(
        "kinesis", region_name="us-east-1", endpoint_url=os.environ.get("KINESIS_ENDPOINT", "http://127.0.0.1:4566"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"))


def create(kinesis) -> None:
    for stream, shards in (("clicks", 2), ("click-counts", 1)):
        kinesis.create_stream(StreamName=stream, ShardCount=shards)
    for stream in ("clicks", "click-counts"):
        while kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
            time.sleep(0.1)
    print("created clicks and click-counts")


def click(kinesis, user: str, page: str) -> None:
    kinesis.put_record(StreamName="clicks", PartitionKey=user, Data=page.encode())


def counts(kinesis) -> None:
    for shard in kinesis.list_shards(StreamName="click-counts")["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName="click-counts", ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator)
            for record in page["Records"]:
                print(record["Data"].decode())
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")


if __name__ == "__main__":
    command, *arguments = sys.argv[1:] or ["help"]
    if command == "create":
        create(client())
    elif command == "click" and len(arguments) == 2:
        click(client(), *arguments)
    elif command == "counts":
        counts(client())
    else:
        sys.exit(__doc__)
