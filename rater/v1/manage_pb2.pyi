import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeckChunk(_message.Message):
    __slots__ = ("table", "filename", "currency", "timezone", "replace", "data")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    table: str
    filename: str
    currency: str
    timezone: str
    replace: bool
    data: bytes
    def __init__(self, table: _Optional[str] = ..., filename: _Optional[str] = ..., currency: _Optional[str] = ..., timezone: _Optional[str] = ..., replace: _Optional[bool] = ..., data: _Optional[bytes] = ...) -> None: ...

class DeckImportReply(_message.Message):
    __slots__ = ("table", "version", "file_rows", "unchanged", "summary", "rows", "warnings", "created")
    class SummaryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TABLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FILE_ROWS_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    table: str
    version: int
    file_rows: int
    unchanged: int
    summary: _containers.ScalarMap[str, int]
    rows: int
    warnings: _containers.RepeatedScalarFieldContainer[str]
    created: bool
    def __init__(self, table: _Optional[str] = ..., version: _Optional[int] = ..., file_rows: _Optional[int] = ..., unchanged: _Optional[int] = ..., summary: _Optional[_Mapping[str, int]] = ..., rows: _Optional[int] = ..., warnings: _Optional[_Iterable[str]] = ..., created: _Optional[bool] = ...) -> None: ...

class TableInfo(_message.Message):
    __slots__ = ("name", "currency", "timezone", "version", "prefixes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PREFIXES_FIELD_NUMBER: _ClassVar[int]
    name: str
    currency: str
    timezone: str
    version: int
    prefixes: int
    def __init__(self, name: _Optional[str] = ..., currency: _Optional[str] = ..., timezone: _Optional[str] = ..., version: _Optional[int] = ..., prefixes: _Optional[int] = ...) -> None: ...

class ListTablesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTablesReply(_message.Message):
    __slots__ = ("tables",)
    TABLES_FIELD_NUMBER: _ClassVar[int]
    tables: _containers.RepeatedCompositeFieldContainer[TableInfo]
    def __init__(self, tables: _Optional[_Iterable[_Union[TableInfo, _Mapping]]] = ...) -> None: ...

class ShowTableRequest(_message.Message):
    __slots__ = ("table", "prefix", "at", "limit")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    table: str
    prefix: str
    at: _timestamp_pb2.Timestamp
    limit: int
    def __init__(self, table: _Optional[str] = ..., prefix: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class RateRowInfo(_message.Message):
    __slots__ = ("prefix", "destination", "profile", "price", "connect_fee", "effective_from", "effective_to")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    CONNECT_FEE_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    destination: str
    profile: str
    price: str
    connect_fee: str
    effective_from: str
    effective_to: str
    def __init__(self, prefix: _Optional[str] = ..., destination: _Optional[str] = ..., profile: _Optional[str] = ..., price: _Optional[str] = ..., connect_fee: _Optional[str] = ..., effective_from: _Optional[str] = ..., effective_to: _Optional[str] = ...) -> None: ...

class ShowTableReply(_message.Message):
    __slots__ = ("table", "rows", "total")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    table: TableInfo
    rows: _containers.RepeatedCompositeFieldContainer[RateRowInfo]
    total: int
    def __init__(self, table: _Optional[_Union[TableInfo, _Mapping]] = ..., rows: _Optional[_Iterable[_Union[RateRowInfo, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class DiffRequest(_message.Message):
    __slots__ = ("table", "limit")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    table: str
    limit: int
    def __init__(self, table: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class RowChange(_message.Message):
    __slots__ = ("kind", "before", "after")
    KIND_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    kind: str
    before: RateRowInfo
    after: RateRowInfo
    def __init__(self, kind: _Optional[str] = ..., before: _Optional[_Union[RateRowInfo, _Mapping]] = ..., after: _Optional[_Union[RateRowInfo, _Mapping]] = ...) -> None: ...

class DiffReply(_message.Message):
    __slots__ = ("table", "version", "action", "summary", "changes")
    class SummaryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TABLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    table: str
    version: int
    action: str
    summary: _containers.ScalarMap[str, int]
    changes: _containers.RepeatedCompositeFieldContainer[RowChange]
    def __init__(self, table: _Optional[str] = ..., version: _Optional[int] = ..., action: _Optional[str] = ..., summary: _Optional[_Mapping[str, int]] = ..., changes: _Optional[_Iterable[_Union[RowChange, _Mapping]]] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("table",)
    TABLE_FIELD_NUMBER: _ClassVar[int]
    table: str
    def __init__(self, table: _Optional[str] = ...) -> None: ...

class RollbackReply(_message.Message):
    __slots__ = ("table", "undone", "version")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    UNDONE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    table: str
    undone: int
    version: int
    def __init__(self, table: _Optional[str] = ..., undone: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class ClientInfo(_message.Message):
    __slots__ = ("name", "currency", "mode", "credit_limit", "rate_table", "timezone", "status", "max_call_length", "capacity")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    RATE_TABLE_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MAX_CALL_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    currency: str
    mode: str
    credit_limit: str
    rate_table: str
    timezone: str
    status: str
    max_call_length: int
    capacity: int
    def __init__(self, name: _Optional[str] = ..., currency: _Optional[str] = ..., mode: _Optional[str] = ..., credit_limit: _Optional[str] = ..., rate_table: _Optional[str] = ..., timezone: _Optional[str] = ..., status: _Optional[str] = ..., max_call_length: _Optional[int] = ..., capacity: _Optional[int] = ...) -> None: ...

class ClientRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListClientsRequest(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: str
    def __init__(self, status: _Optional[str] = ...) -> None: ...

class ListClientsReply(_message.Message):
    __slots__ = ("clients",)
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    clients: _containers.RepeatedCompositeFieldContainer[ClientInfo]
    def __init__(self, clients: _Optional[_Iterable[_Union[ClientInfo, _Mapping]]] = ...) -> None: ...

class AccountInfo(_message.Message):
    __slots__ = ("id", "client", "ip", "username", "ani", "tech_prefix", "rate_table")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    ANI_FIELD_NUMBER: _ClassVar[int]
    TECH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    RATE_TABLE_FIELD_NUMBER: _ClassVar[int]
    id: int
    client: str
    ip: str
    username: str
    ani: str
    tech_prefix: str
    rate_table: str
    def __init__(self, id: _Optional[int] = ..., client: _Optional[str] = ..., ip: _Optional[str] = ..., username: _Optional[str] = ..., ani: _Optional[str] = ..., tech_prefix: _Optional[str] = ..., rate_table: _Optional[str] = ...) -> None: ...

class ListAccountsReply(_message.Message):
    __slots__ = ("accounts",)
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[AccountInfo]
    def __init__(self, accounts: _Optional[_Iterable[_Union[AccountInfo, _Mapping]]] = ...) -> None: ...

class BalanceReply(_message.Message):
    __slots__ = ("client", "currency", "live", "fixed", "available")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    FIXED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    client: str
    currency: str
    live: str
    fixed: str
    available: str
    def __init__(self, client: _Optional[str] = ..., currency: _Optional[str] = ..., live: _Optional[str] = ..., fixed: _Optional[str] = ..., available: _Optional[str] = ...) -> None: ...

class TransactionRequest(_message.Message):
    __slots__ = ("client", "type", "amount", "key", "ref", "note", "currency")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    client: str
    type: str
    amount: str
    key: str
    ref: int
    note: str
    currency: str
    def __init__(self, client: _Optional[str] = ..., type: _Optional[str] = ..., amount: _Optional[str] = ..., key: _Optional[str] = ..., ref: _Optional[int] = ..., note: _Optional[str] = ..., currency: _Optional[str] = ...) -> None: ...

class TransactionReply(_message.Message):
    __slots__ = ("entry", "duplicate", "live", "fixed")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    FIXED_FIELD_NUMBER: _ClassVar[int]
    entry: int
    duplicate: bool
    live: str
    fixed: str
    def __init__(self, entry: _Optional[int] = ..., duplicate: _Optional[bool] = ..., live: _Optional[str] = ..., fixed: _Optional[str] = ...) -> None: ...

class EditClientRequest(_message.Message):
    __slots__ = ("name", "new_name", "mode", "credit_limit", "rate_table", "status", "max_call_length", "capacity", "timezone")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    RATE_TABLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MAX_CALL_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    name: str
    new_name: str
    mode: str
    credit_limit: str
    rate_table: str
    status: str
    max_call_length: int
    capacity: int
    timezone: str
    def __init__(self, name: _Optional[str] = ..., new_name: _Optional[str] = ..., mode: _Optional[str] = ..., credit_limit: _Optional[str] = ..., rate_table: _Optional[str] = ..., status: _Optional[str] = ..., max_call_length: _Optional[int] = ..., capacity: _Optional[int] = ..., timezone: _Optional[str] = ...) -> None: ...

class AccountRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...
