import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RateRequest(_message.Message):
    __slots__ = ("table", "number", "start", "duration_seconds", "tech_prefix", "client")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TECH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    table: str
    number: str
    start: _timestamp_pb2.Timestamp
    duration_seconds: int
    tech_prefix: str
    client: str
    def __init__(self, table: _Optional[str] = ..., number: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_seconds: _Optional[int] = ..., tech_prefix: _Optional[str] = ..., client: _Optional[str] = ...) -> None: ...

class RateReply(_message.Message):
    __slots__ = ("cost", "currency", "prefix", "destination", "billed_seconds", "table")
    COST_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    BILLED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    cost: str
    currency: str
    prefix: str
    destination: str
    billed_seconds: int
    table: str
    def __init__(self, cost: _Optional[str] = ..., currency: _Optional[str] = ..., prefix: _Optional[str] = ..., destination: _Optional[str] = ..., billed_seconds: _Optional[int] = ..., table: _Optional[str] = ...) -> None: ...

class RateBatch(_message.Message):
    __slots__ = ("table", "numbers", "starts", "durations", "batch_id")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    NUMBERS_FIELD_NUMBER: _ClassVar[int]
    STARTS_FIELD_NUMBER: _ClassVar[int]
    DURATIONS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    table: str
    numbers: _containers.RepeatedScalarFieldContainer[str]
    starts: _containers.RepeatedScalarFieldContainer[int]
    durations: _containers.RepeatedScalarFieldContainer[int]
    batch_id: int
    def __init__(self, table: _Optional[str] = ..., numbers: _Optional[_Iterable[str]] = ..., starts: _Optional[_Iterable[int]] = ..., durations: _Optional[_Iterable[int]] = ..., batch_id: _Optional[int] = ...) -> None: ...

class RateBatchReply(_message.Message):
    __slots__ = ("batch_id", "currency", "cost_nanos", "billed_seconds", "prefix_lengths", "destinations", "destination_names")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    BILLED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_LENGTHS_FIELD_NUMBER: _ClassVar[int]
    DESTINATIONS_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_NAMES_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    currency: str
    cost_nanos: _containers.RepeatedScalarFieldContainer[int]
    billed_seconds: _containers.RepeatedScalarFieldContainer[int]
    prefix_lengths: _containers.RepeatedScalarFieldContainer[int]
    destinations: _containers.RepeatedScalarFieldContainer[int]
    destination_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, batch_id: _Optional[int] = ..., currency: _Optional[str] = ..., cost_nanos: _Optional[_Iterable[int]] = ..., billed_seconds: _Optional[_Iterable[int]] = ..., prefix_lengths: _Optional[_Iterable[int]] = ..., destinations: _Optional[_Iterable[int]] = ..., destination_names: _Optional[_Iterable[str]] = ...) -> None: ...

class AuthorizeRequest(_message.Message):
    __slots__ = ("nas", "username", "password", "calling", "called", "session_id")
    NAS_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    CALLING_FIELD_NUMBER: _ClassVar[int]
    CALLED_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    nas: str
    username: str
    password: str
    calling: str
    called: str
    session_id: str
    def __init__(self, nas: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ..., calling: _Optional[str] = ..., called: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class AuthorizeReply(_message.Message):
    __slots__ = ("seconds", "credit", "currency", "prepaid")
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PREPAID_FIELD_NUMBER: _ClassVar[int]
    seconds: int
    credit: str
    currency: str
    prepaid: bool
    def __init__(self, seconds: _Optional[int] = ..., credit: _Optional[str] = ..., currency: _Optional[str] = ..., prepaid: _Optional[bool] = ...) -> None: ...

class CallEvent(_message.Message):
    __slots__ = ("nas", "username", "calling", "called", "session_id", "duration_seconds", "end", "answered")
    NAS_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    CALLING_FIELD_NUMBER: _ClassVar[int]
    CALLED_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_FIELD_NUMBER: _ClassVar[int]
    nas: str
    username: str
    calling: str
    called: str
    session_id: str
    duration_seconds: int
    end: _timestamp_pb2.Timestamp
    answered: _timestamp_pb2.Timestamp
    def __init__(self, nas: _Optional[str] = ..., username: _Optional[str] = ..., calling: _Optional[str] = ..., called: _Optional[str] = ..., session_id: _Optional[str] = ..., duration_seconds: _Optional[int] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., answered: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CallEventReply(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    def __init__(self, outcome: _Optional[str] = ...) -> None: ...
