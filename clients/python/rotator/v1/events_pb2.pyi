import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from rotator.v1 import rotation_pb2 as _rotation_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Trigger(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIGGER_UNSPECIFIED: _ClassVar[Trigger]
    TRIGGER_MANUAL: _ClassVar[Trigger]
    TRIGGER_SCHEDULED: _ClassVar[Trigger]
TRIGGER_UNSPECIFIED: Trigger
TRIGGER_MANUAL: Trigger
TRIGGER_SCHEDULED: Trigger

class RotationCompleted(_message.Message):
    __slots__ = ("attempt",)
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    attempt: RotationAttempt
    def __init__(self, attempt: _Optional[_Union[RotationAttempt, _Mapping]] = ...) -> None: ...

class RotationFailed(_message.Message):
    __slots__ = ("attempt", "code", "retryable", "message", "reason")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    attempt: RotationAttempt
    code: str
    retryable: bool
    message: str
    reason: str
    def __init__(self, attempt: _Optional[_Union[RotationAttempt, _Mapping]] = ..., code: _Optional[str] = ..., retryable: bool = ..., message: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RotationAttempt(_message.Message):
    __slots__ = ("event_id", "time", "rotation_id", "type", "name", "project_id", "environment", "folder_path", "backend", "active_index", "trigger", "attempt_number", "duration", "request_id", "upstream_req_id", "trace_id", "resolves_event_id")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ROTATION_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    FOLDER_PATH_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_INDEX_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_REQ_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLVES_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    time: _timestamp_pb2.Timestamp
    rotation_id: str
    type: _rotation_pb2.RotationType
    name: str
    project_id: str
    environment: str
    folder_path: str
    backend: _rotation_pb2.Backend
    active_index: int
    trigger: Trigger
    attempt_number: int
    duration: _duration_pb2.Duration
    request_id: str
    upstream_req_id: str
    trace_id: str
    resolves_event_id: str
    def __init__(self, event_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rotation_id: _Optional[str] = ..., type: _Optional[_Union[_rotation_pb2.RotationType, str]] = ..., name: _Optional[str] = ..., project_id: _Optional[str] = ..., environment: _Optional[str] = ..., folder_path: _Optional[str] = ..., backend: _Optional[_Union[_rotation_pb2.Backend, str]] = ..., active_index: _Optional[int] = ..., trigger: _Optional[_Union[Trigger, str]] = ..., attempt_number: _Optional[int] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., request_id: _Optional[str] = ..., upstream_req_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., resolves_event_id: _Optional[str] = ...) -> None: ...

class CredentialDelivered(_message.Message):
    __slots__ = ("delivery",)
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    delivery: DeliveryAttempt
    def __init__(self, delivery: _Optional[_Union[DeliveryAttempt, _Mapping]] = ...) -> None: ...

class CredentialDeliveryFailed(_message.Message):
    __slots__ = ("delivery", "message")
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    delivery: DeliveryAttempt
    message: str
    def __init__(self, delivery: _Optional[_Union[DeliveryAttempt, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class DeliveryAttempt(_message.Message):
    __slots__ = ("event_id", "time", "rotation_id", "type", "name", "sink", "sink_kind", "version", "since_commit", "attempt_number")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ROTATION_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SINK_FIELD_NUMBER: _ClassVar[int]
    SINK_KIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SINCE_COMMIT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    time: _timestamp_pb2.Timestamp
    rotation_id: str
    type: _rotation_pb2.RotationType
    name: str
    sink: str
    sink_kind: str
    version: int
    since_commit: _duration_pb2.Duration
    attempt_number: int
    def __init__(self, event_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rotation_id: _Optional[str] = ..., type: _Optional[_Union[_rotation_pb2.RotationType, str]] = ..., name: _Optional[str] = ..., sink: _Optional[str] = ..., sink_kind: _Optional[str] = ..., version: _Optional[int] = ..., since_commit: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., attempt_number: _Optional[int] = ...) -> None: ...

class CredentialHandoverTimedOut(_message.Message):
    __slots__ = ("handover", "unconfirmed_consumers", "grace")
    HANDOVER_FIELD_NUMBER: _ClassVar[int]
    UNCONFIRMED_CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    GRACE_FIELD_NUMBER: _ClassVar[int]
    handover: HandoverAttempt
    unconfirmed_consumers: _containers.RepeatedScalarFieldContainer[str]
    grace: _duration_pb2.Duration
    def __init__(self, handover: _Optional[_Union[HandoverAttempt, _Mapping]] = ..., unconfirmed_consumers: _Optional[_Iterable[str]] = ..., grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CredentialHandoverComplete(_message.Message):
    __slots__ = ("handover",)
    HANDOVER_FIELD_NUMBER: _ClassVar[int]
    handover: HandoverAttempt
    def __init__(self, handover: _Optional[_Union[HandoverAttempt, _Mapping]] = ...) -> None: ...

class HandoverAttempt(_message.Message):
    __slots__ = ("event_id", "time", "rotation_id", "type", "name", "version", "since_commit", "request_id")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ROTATION_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SINCE_COMMIT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    time: _timestamp_pb2.Timestamp
    rotation_id: str
    type: _rotation_pb2.RotationType
    name: str
    version: int
    since_commit: _duration_pb2.Duration
    request_id: str
    def __init__(self, event_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rotation_id: _Optional[str] = ..., type: _Optional[_Union[_rotation_pb2.RotationType, str]] = ..., name: _Optional[str] = ..., version: _Optional[int] = ..., since_commit: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...
