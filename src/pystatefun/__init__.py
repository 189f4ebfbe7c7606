"""pystatefun: Stateful Functions for Python.

Code written for the official ``apache-flink-statefun`` SDK runs on pystatefun after changing
``from statefun import ...`` to ``from pystatefun import ...``.
"""

from pystatefun.sdk.address import SdkAddress
from pystatefun.sdk.context import Context
from pystatefun.sdk.egress import kafka_egress_message, kinesis_egress_message
from pystatefun.sdk.errors import MalformedRequestError, StateTypeMismatchError, UnknownFunctionError
from pystatefun.sdk.functions import StatefulFunction, StatefulFunctions
from pystatefun.sdk.messages import EgressMessage, Message, egress_message_builder, message_builder
from pystatefun.sdk.types import (
    BoolType,
    DoubleType,
    FloatType,
    IntType,
    LongType,
    StringType,
    Type,
    TypeSerializer,
    make_json_type,
    make_protobuf_type,
    simple_type,
)
from pystatefun.sdk.value_spec import ValueSpec
from pystatefun.serving.handler import RequestReplyHandler

__version__ = "0.1.0"

__all__ = [
    # the public names of apache-flink-statefun 3.3.0
    "TypeSerializer",
    "Type",
    "simple_type",
    "ValueSpec",
    "SdkAddress",
    "BoolType",
    "IntType",
    "FloatType",
    "DoubleType",
    "LongType",
    "StringType",
    "Message",
    "EgressMessage",
    "message_builder",
    "egress_message_builder",
    "kafka_egress_message",
    "kinesis_egress_message",
    "Context",
    "StatefulFunctions",
    "RequestReplyHandler",
    "make_protobuf_type",
    "make_json_type",
    # pystatefun additions
    "StatefulFunction",
    "UnknownFunctionError",
    "MalformedRequestError",
    "StateTypeMismatchError",
]
