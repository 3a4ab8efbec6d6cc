import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RateRequest(_message.Message):
    __slots__ = ("table", "number", "start", "duration_seconds", "tech_prefix")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TECH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    table: str
    number: str
    start: _timestamp_pb2.Timestamp
    duration_seconds: int
    tech_prefix: str
    def __init__(self, table: _Optional[str] = ..., number: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_seconds: _Optional[int] = ..., tech_prefix: _Optional[str] = ...) -> None: ...

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
