import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mcsv.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConversionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONVERSION_STATE_UNSPECIFIED: _ClassVar[ConversionState]
    CONVERSION_STATE_PENDING: _ClassVar[ConversionState]
    CONVERSION_STATE_SUCCEEDED: _ClassVar[ConversionState]
    CONVERSION_STATE_FAILED: _ClassVar[ConversionState]
    CONVERSION_STATE_CANCELLED: _ClassVar[ConversionState]
CONVERSION_STATE_UNSPECIFIED: ConversionState
CONVERSION_STATE_PENDING: ConversionState
CONVERSION_STATE_SUCCEEDED: ConversionState
CONVERSION_STATE_FAILED: ConversionState
CONVERSION_STATE_CANCELLED: ConversionState

class User(_message.Message):
    __slots__ = ("id", "name", "email", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    email: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., email: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Conversion(_message.Message):
    __slots__ = ("id", "user_id", "filename", "options", "state", "job_id", "source_bytes", "pdf_url", "result", "error", "created_at", "finished_at", "upload_kept_until")
    ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PDF_URL_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_KEPT_UNTIL_FIELD_NUMBER: _ClassVar[int]
    id: str
    user_id: str
    filename: str
    options: _common_pb2.ConversionOptions
    state: ConversionState
    job_id: str
    source_bytes: int
    pdf_url: str
    result: _common_pb2.ConversionResult
    error: str
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    upload_kept_until: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., user_id: _Optional[str] = ..., filename: _Optional[str] = ..., options: _Optional[_Union[_common_pb2.ConversionOptions, _Mapping]] = ..., state: _Optional[_Union[ConversionState, str]] = ..., job_id: _Optional[str] = ..., source_bytes: _Optional[int] = ..., pdf_url: _Optional[str] = ..., result: _Optional[_Union[_common_pb2.ConversionResult, _Mapping]] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., upload_kept_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateUserRequest(_message.Message):
    __slots__ = ("name", "email")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    email: str
    def __init__(self, name: _Optional[str] = ..., email: _Optional[str] = ...) -> None: ...

class CreateUserResponse(_message.Message):
    __slots__ = ("user", "job_id", "api_token")
    USER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    API_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user: User
    job_id: str
    api_token: str
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., job_id: _Optional[str] = ..., api_token: _Optional[str] = ...) -> None: ...

class GetUserRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetUserResponse(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: User
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class ConvertImageRequest(_message.Message):
    __slots__ = ("user_id", "filename", "image_data", "options", "idempotency_key")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_DATA_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    filename: str
    image_data: bytes
    options: _common_pb2.ConversionOptions
    idempotency_key: str
    def __init__(self, user_id: _Optional[str] = ..., filename: _Optional[str] = ..., image_data: _Optional[bytes] = ..., options: _Optional[_Union[_common_pb2.ConversionOptions, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ConvertImageResponse(_message.Message):
    __slots__ = ("conversion",)
    CONVERSION_FIELD_NUMBER: _ClassVar[int]
    conversion: Conversion
    def __init__(self, conversion: _Optional[_Union[Conversion, _Mapping]] = ...) -> None: ...

class GetConversionRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetConversionResponse(_message.Message):
    __slots__ = ("conversion", "pdf_upload_url")
    CONVERSION_FIELD_NUMBER: _ClassVar[int]
    PDF_UPLOAD_URL_FIELD_NUMBER: _ClassVar[int]
    conversion: Conversion
    pdf_upload_url: str
    def __init__(self, conversion: _Optional[_Union[Conversion, _Mapping]] = ..., pdf_upload_url: _Optional[str] = ...) -> None: ...

class NotifyEmailDeliveredRequest(_message.Message):
    __slots__ = ("delivery",)
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    delivery: _common_pb2.EmailDelivery
    def __init__(self, delivery: _Optional[_Union[_common_pb2.EmailDelivery, _Mapping]] = ...) -> None: ...

class NotifyEmailDeliveredResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConversionCompleteRequest(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: _common_pb2.ConversionReport
    def __init__(self, report: _Optional[_Union[_common_pb2.ConversionReport, _Mapping]] = ...) -> None: ...

class ConversionCompleteResponse(_message.Message):
    __slots__ = ("conversion",)
    CONVERSION_FIELD_NUMBER: _ClassVar[int]
    conversion: Conversion
    def __init__(self, conversion: _Optional[_Union[Conversion, _Mapping]] = ...) -> None: ...

class ListConversionsRequest(_message.Message):
    __slots__ = ("user_id", "state", "page_size", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    state: ConversionState
    page_size: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., state: _Optional[_Union[ConversionState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListConversionsResponse(_message.Message):
    __slots__ = ("conversions", "next_page_token")
    CONVERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    conversions: _containers.RepeatedCompositeFieldContainer[Conversion]
    next_page_token: str
    def __init__(self, conversions: _Optional[_Iterable[_Union[Conversion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
