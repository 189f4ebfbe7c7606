from pystatefun.wire import request_reply_pb2 as _request_reply_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogMessage(_message.Message):
    __slots__ = ("target", "caller", "value", "traceparent")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    target: _request_reply_pb2.Address
    caller: _request_reply_pb2.Address
    value: _request_reply_pb2.TypedValue
    traceparent: str
    def __init__(self, target: _Optional[_Union[_request_reply_pb2.Address, _Mapping]] = ..., caller: _Optional[_Union[_request_reply_pb2.Address, _Mapping]] = ..., value: _Optional[_Union[_request_reply_pb2.TypedValue, _Mapping]] = ..., traceparent: _Optional[str] = ...) -> None: ...

class StateValue(_message.Message):
    __slots__ = ("value", "expire_at_ms")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_AT_MS_FIELD_NUMBER: _ClassVar[int]
    value: _request_reply_pb2.TypedValue
    expire_at_ms: int
    def __init__(self, value: _Optional[_Union[_request_reply_pb2.TypedValue, _Mapping]] = ..., expire_at_ms: _Optional[int] = ...) -> None: ...

class TimerValue(_message.Message):
    __slots__ = ("due_ms", "token", "message")
    DUE_MS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    due_ms: int
    token: str
    message: LogMessage
    def __init__(self, due_ms: _Optional[int] = ..., token: _Optional[str] = ..., message: _Optional[_Union[LogMessage, _Mapping]] = ...) -> None: ...

class ParkedValue(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class IdempotencyValue(_message.Message):
    __slots__ = ("expires_ms", "status", "body", "content_type", "request")
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    expires_ms: int
    status: int
    body: bytes
    content_type: str
    request: str
    def __init__(self, expires_ms: _Optional[int] = ..., status: _Optional[int] = ..., body: _Optional[bytes] = ..., content_type: _Optional[str] = ..., request: _Optional[str] = ...) -> None: ...

class ProcessedOffsets(_message.Message):
    __slots__ = ("ranges",)
    RANGES_FIELD_NUMBER: _ClassVar[int]
    ranges: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ranges: _Optional[_Iterable[int]] = ...) -> None: ...
