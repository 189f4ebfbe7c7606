"""io.statefun.kafka.v1/ingress and /egress: every key of spec §3.4."""

from datetime import UTC, datetime, timedelta

import pytest

from pystatefun.config import KafkaDeliverySemantic, KafkaEgress, KafkaIngress, KafkaStartupPosition, Routing

BINDING = """
kind: io.statefun.endpoints.v2/http
spec:
  functions: com.example/*
  urlPathTemplate: http://functions:8000/
---
"""


def test_ingress_minimal(files):
    module = files.load(
        BINDING
        + """
kind: io.statefun.kafka.v1/ingress
spec:
  id: com.example/names
  address: kafka:9092
  consumerGroupId: my-group
  topics:
    - topic: names
      valueType: com.example/Name
      targets: [com.example/greeter]
"""
    )
    (ingress,) = module.ingresses
    assert ingress == KafkaIngress(
        id="com.example/names",
        address="kafka:9092",
        consumer_group_id="my-group",
        topics=(Routing(source="names", value_type="com.example/Name", targets=("com.example/greeter",)),),
    )
    assert ingress.kind == "io.statefun.kafka.v1/ingress"
    assert ingress.auto_offset_reset_position == "latest"
    assert ingress.startup_position == KafkaStartupPosition(type="latest")  # the YAML binder's default
    assert dict(ingress.properties) == {}


def test_ingress_full(files):
    module = files.load(
        BINDING
        + """
kind: io.statefun.kafka.v1/ingress
spec:
  id: com.example/names
  topics:
    - topic: names
      valueType: type.googleapis.com/com.example.Name
      targets:
        - com.example/greeter
        - com.example/counter
    - topic: 2024
      valueType: com.example/Year
      targets: [com.example/counter]
  autoOffsetResetPosition: EARLIEST
  startupPosition:
    type: specific-offsets
    offsets:
      - "names/0": 91
      - "names/1": 11
      - 2024/0: 0
  properties:
    - bootstrap.servers: kafka-a:9092,kafka-b:9092
    - group.id: from-properties
    - max.poll.records: 500
    - enable.auto.commit: false
"""
    )
    (ingress,) = module.ingresses
    assert ingress.address == "kafka-a:9092,kafka-b:9092"
    assert ingress.consumer_group_id == "from-properties"
    assert ingress.topics[0].targets == ("com.example/greeter", "com.example/counter")
    assert ingress.topics[1].source == "2024"
    assert ingress.auto_offset_reset_position == "earliest"
    assert ingress.startup_position.type == "specific-offsets"
    assert dict(ingress.startup_position.offsets) == {("names", 0): 91, ("names", 1): 11, ("2024", 0): 0}
    assert dict(ingress.properties) == {
        "bootstrap.servers": "kafka-a:9092,kafka-b:9092",
        "group.id": "from-properties",
        "max.poll.records": "500",
        "enable.auto.commit": "false",
    }


def test_named_keys_override_properties(files):
    module = files.load(
        BINDING
        + """
kind: io.statefun.kafka.v1/ingress
spec:
  id: com.example/names
  address: named:9092
  consumerGroupId: named-group
  topics: [{topic: names, valueType: com.example/Name, targets: [com.example/greeter]}]
  properties:
    - bootstrap.servers: prop:9092
    - group.id: prop-group
"""
    )
    assert module.ingresses[0].address == "named:9092"
    assert module.ingresses[0].consumer_group_id == "named-group"


@pytest.mark.parametrize("position", ["group-offsets", "earliest", "latest"])
def test_simple_startup_positions(files, position):
    module = files.load(
        BINDING
        + f"""
kind: io.statefun.kafka.v1/ingress
spec:
  id: com.example/names
  address: kafka:9092
  consumerGroupId: g
  topics: [{{topic: names, valueType: com.example/Name, targets: [com.example/greeter]}}]
  startupPosition:
    type: {position}
"""
    )
    assert module.ingresses[0].startup_position == KafkaStartupPosition(type=position)


def test_date_startup_position(files):
    module = files.load(
        BINDING
        + """
kind: io.statefun.kafka.v1/ingress
spec:
  id: com.example/names
  address: kafka:9092
  consumerGroupId: g
  topics: [{topic: names, valueType: com.example/Name, targets: [com.example/greeter]}]
  startupPosition:
    type: date
    date: 2020-02-01 04:15:00.000 -0800
"""
    )
    date = module.ingresses[0].startup_position.date
    assert date == datetime(2020, 2, 1, 12, 15, tzinfo=UTC)
    assert date.utcoffset() == timedelta(hours=-8)


def test_ingress_problems(files):
    error = files.error(
        BINDING
        + """
kind: io.statefun.kafka.v1/ingress
spec:
  id: names
  topics:
    - topic: names
      valueType: Name
      targets: []
    - topic: names
      valueType: com.example/Name
      targets: [com.example/greeter]
      partitions: 3
    - just-a-topic
  autoOffsetResetPosition: middle
  startupPosition:
    type: specific-offsets
    offsets:
      - names: 3
      - "names/x": 1
      - "names/0": -5
      - "names/1": 1
        "names/2": 2
  properties:
    - a: 1
      b: 2
    - c
"""
    )
    text = str(error)
    prefix = "module.yaml, document 2 (io.statefun.kafka.v1/ingress): "
    assert prefix + "spec.id: 'names' is not a typename: write '<namespace>/<name>', e.g. 'com.example/greeter'" in text
    assert prefix + "spec.topics[0].valueType: 'Name' is not a type name" in text
    assert prefix + "spec.topics[0].targets: must list at least one item, e.g. [com.example/greeter]" in text
    assert prefix + "spec.topics[1].partitions: unknown key 'partitions' (allowed keys: topic, valueType, targets)" in text
    assert prefix + "spec.topics[2]: expected a mapping like {topic: names, valueType: com.example/Name, targets: [com.example/greeter]}, got the string 'just-a-topic'" in text
    assert prefix + "spec.autoOffsetResetPosition: 'middle' is not one of: earliest, latest" in text
    assert prefix + "spec.startupPosition.offsets[0]: 'names' is not '<topic>/<partition>', e.g. 'names/0'" in text
    assert prefix + "spec.startupPosition.offsets[1]: 'names/x' is not '<topic>/<partition>'" in text
    assert prefix + "spec.startupPosition.offsets[2].names/0: -5 is too small: use a number from 0 to 9223372036854775807" in text
    assert prefix + "spec.startupPosition.offsets[3]: expected a single-key map like '- \"names/0\": 42'" in text
    assert prefix + "spec.properties[0]: expected a single-key map like '- group.id: my-group', got 2 keys" in text
    assert prefix + "spec.properties[1]: expected a single-key map like '- group.id: my-group', got the string 'c'" in text
    assert prefix + "spec: no Kafka bootstrap servers: set 'address' (e.g. address: kafka:9092) or a 'bootstrap.servers' property" in text
    assert prefix + "spec: no consumer group: set 'consumerGroupId'" in text


def test_topic_listed_twice(files):
    problem = files.problem(
        BINDING
        + """
kind: io.statefun.kafka.v1/ingress
spec:
  id: com.example/names
  address: kafka:9092
  consumerGroupId: g
  topics:
    - {topic: names, valueType: com.example/Name, targets: [com.example/greeter]}
    - {topic: names, valueType: com.example/Name, targets: [com.example/other]}
"""
    )
    assert "spec.topics[1]: topic 'names' is listed twice: merge the two entries' targets into one" in problem


def test_ingress_needs_topics(files):
    problem = files.problem(
        BINDING
        + """
kind: io.statefun.kafka.v1/ingress
spec:
  id: com.example/names
  address: kafka:9092
  consumerGroupId: g
"""
    )
    assert "document 2 (io.statefun.kafka.v1/ingress): spec: missing required key 'topics', e.g. topics: [{topic: names" in problem


@pytest.mark.parametrize(
    ("position", "message"),
    [
        ("{type: date, date: '2020-02-01 04:15:00 +0000'}", "spec.startupPosition.date: invalid date '2020-02-01 04:15:00 +0000': use the pattern 'yyyy-MM-dd HH:mm:ss.SSS Z'"),
        ("{type: date, date: '2020-02-01 04:15:00.000 +00:00'}", "invalid date '2020-02-01 04:15:00.000 +00:00'"),
        ("{type: date, date: '2020-13-01 04:15:00.000 +0000'}", "invalid date '2020-13-01 04:15:00.000 +0000'"),
        ("{type: date}", "spec.startupPosition: missing required key 'date', e.g. date: '2020-02-01 04:15:00.000 +0000'"),
        ("{type: specific-offsets}", "spec.startupPosition: missing required key 'offsets'"),
        ("{type: earliest, date: '2020-02-01 04:15:00.000 +0000'}", "spec.startupPosition.date: key 'date' is not allowed here: only with type: date"),
        ("{type: latest, offsets: []}", "spec.startupPosition.offsets: key 'offsets' is not allowed here: only with type: specific-offsets"),
        ("{date: '2020-02-01 04:15:00.000 +0000'}", "spec.startupPosition: missing required key 'type', e.g. type: earliest"),
        ("{type: group_offsets}", "spec.startupPosition.type: 'group_offsets' is not one of: group-offsets, earliest, latest, specific-offsets, date"),
        ("latest", "spec.startupPosition: expected a mapping of keys to values, got the string 'latest'"),
        ("{type: specific-offsets, offsets: [{'other/0': 5}]}", "spec.startupPosition.offsets: offset given for 'other/0', but this ingress does not read topic 'other'"),
    ],
)
def test_startup_position_problems(files, position, message):
    problem = files.problem(
        BINDING
        + f"""
kind: io.statefun.kafka.v1/ingress
spec:
  id: com.example/names
  address: kafka:9092
  consumerGroupId: g
  topics: [{{topic: names, valueType: com.example/Name, targets: [com.example/greeter]}}]
  startupPosition: {position}
"""
    )
    assert message in problem


def test_egress_minimal(files):
    module = files.load(
        """
        kind: io.statefun.kafka.v1/egress
        spec:
          id: com.example/greets
          address: kafka:9092
        """
    )
    assert module.egresses == (KafkaEgress(id="com.example/greets", address="kafka:9092"),)
    assert module.egresses[0].delivery_semantic == KafkaDeliverySemantic(type="at-least-once")


def test_egress_exactly_once(files):
    module = files.load(
        """
        kind: io.statefun.kafka.v1/egress
        spec:
          id: com.example/greets
          deliverySemantic:
            type: exactly-once
            transactionTimeout: 15min
          properties:
            - bootstrap.servers: kafka:9092
            - transaction.timeout.ms: 7200000
        ---
        kind: io.statefun.kafka.v1/egress
        spec:
          id: com.example/legacy
          address: kafka:9092
          deliverySemantic:
            type: exactly-once
            transactionTimeoutMillis: 100000
            transactionTimeout: 15min
        ---
        kind: io.statefun.kafka.v1/egress
        spec:
          id: com.example/none
          address: kafka:9092
          deliverySemantic: {type: none}
        """
    )
    first, legacy, none = module.egresses
    assert first.address == "kafka:9092"
    assert first.delivery_semantic == KafkaDeliverySemantic(type="exactly-once", transaction_timeout=timedelta(minutes=15))
    assert dict(first.properties)["transaction.timeout.ms"] == "7200000"
    # StateFun prefers the deprecated millis key
    assert legacy.delivery_semantic.transaction_timeout == timedelta(seconds=100)
    assert none.delivery_semantic == KafkaDeliverySemantic(type="none")


def test_egress_problems(files):
    error = files.error(
        """
        kind: io.statefun.kafka.v1/egress
        spec:
          id: com.example/a
          deliverySemantic:
            type: exactly-once
        ---
        kind: io.statefun.kafka.v1/egress
        spec:
          id: com.example/b
          address: kafka:9092
          deliverySemantic:
            type: exactly-once
            transactionTimeoutMillis: 15min
        ---
        kind: io.statefun.kafka.v1/egress
        spec:
          id: com.example/c
          address: kafka:9092
          deliverySemantic:
            type: at-least-once
            transactionTimeout: 1 min
        ---
        kind: io.statefun.kafka.v1/egress
        spec:
          id: com.example/d
          address: kafka:9092
          deliverySemantic:
            type: exactly_once
          topic: greets
        """
    )
    text = str(error)
    assert "document 1 (io.statefun.kafka.v1/egress): spec.deliverySemantic: exactly-once needs a transaction timeout: set transactionTimeout (e.g. transactionTimeout: 15min)" in text
    assert "document 1 (io.statefun.kafka.v1/egress): spec: no Kafka bootstrap servers" in text
    assert (
        "document 2 (io.statefun.kafka.v1/egress): spec.deliverySemantic.transactionTimeoutMillis: expected a whole number, got the string '15min'; "
        "transactionTimeoutMillis is a number of milliseconds (for a duration like '15min' use transactionTimeout)"
    ) in text
    assert "document 3 (io.statefun.kafka.v1/egress): spec.deliverySemantic.transactionTimeout: key 'transactionTimeout' is not allowed here: only with type: exactly-once" in text
    assert "document 4 (io.statefun.kafka.v1/egress): spec.deliverySemantic.type: 'exactly_once' is not one of: at-least-once, exactly-once, none" in text
    assert "document 4 (io.statefun.kafka.v1/egress): spec.topic: unknown key 'topic'" in text
    assert len(error.problems) == 6
