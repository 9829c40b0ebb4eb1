import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmailTemplate(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMAIL_TEMPLATE_UNSPECIFIED: _ClassVar[EmailTemplate]
    EMAIL_TEMPLATE_WELCOME: _ClassVar[EmailTemplate]
    EMAIL_TEMPLATE_NOTIFICATION: _ClassVar[EmailTemplate]
    EMAIL_TEMPLATE_CONVERSION_COMPLETE: _ClassVar[EmailTemplate]

class PdfQuality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PDF_QUALITY_UNSPECIFIED: _ClassVar[PdfQuality]
    PDF_QUALITY_LOW: _ClassVar[PdfQuality]
    PDF_QUALITY_MEDIUM: _ClassVar[PdfQuality]
    PDF_QUALITY_HIGH: _ClassVar[PdfQuality]
    PDF_QUALITY_LOSSLESS: _ClassVar[PdfQuality]

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_JPEG: _ClassVar[ImageFormat]

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_SUCCEEDED: _ClassVar[Outcome]
    OUTCOME_FAILED: _ClassVar[Outcome]
    OUTCOME_CANCELLED: _ClassVar[Outcome]
EMAIL_TEMPLATE_UNSPECIFIED: EmailTemplate
EMAIL_TEMPLATE_WELCOME: EmailTemplate
EMAIL_TEMPLATE_NOTIFICATION: EmailTemplate
EMAIL_TEMPLATE_CONVERSION_COMPLETE: EmailTemplate
PDF_QUALITY_UNSPECIFIED: PdfQuality
PDF_QUALITY_LOW: PdfQuality
PDF_QUALITY_MEDIUM: PdfQuality
PDF_QUALITY_HIGH: PdfQuality
PDF_QUALITY_LOSSLESS: PdfQuality
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_SUCCEEDED: Outcome
OUTCOME_FAILED: Outcome
OUTCOME_CANCELLED: Outcome

class ConversionOptions(_message.Message):
    __slots__ = ("quality", "strip_metadata", "max_width", "max_height")
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    STRIP_METADATA_FIELD_NUMBER: _ClassVar[int]
    MAX_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MAX_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    quality: PdfQuality
    strip_metadata: bool
    max_width: int
    max_height: int
    def __init__(self, quality: _Optional[_Union[PdfQuality, str]] = ..., strip_metadata: _Optional[bool] = ..., max_width: _Optional[int] = ..., max_height: _Optional[int] = ...) -> None: ...

class ConversionResult(_message.Message):
    __slots__ = ("source_format", "source_bytes", "source_width", "source_height", "output_width", "output_height", "pdf_bytes", "page_width_points", "page_height_points", "quality", "duration")
    SOURCE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PDF_BYTES_FIELD_NUMBER: _ClassVar[int]
    PAGE_WIDTH_POINTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_HEIGHT_POINTS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    source_format: ImageFormat
    source_bytes: int
    source_width: int
    source_height: int
    output_width: int
    output_height: int
    pdf_bytes: int
    page_width_points: float
    page_height_points: float
    quality: PdfQuality
    duration: _duration_pb2.Duration
    def __init__(self, source_format: _Optional[_Union[ImageFormat, str]] = ..., source_bytes: _Optional[int] = ..., source_width: _Optional[int] = ..., source_height: _Optional[int] = ..., output_width: _Optional[int] = ..., output_height: _Optional[int] = ..., pdf_bytes: _Optional[int] = ..., page_width_points: _Optional[float] = ..., page_height_points: _Optional[float] = ..., quality: _Optional[_Union[PdfQuality, str]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class EmailDelivery(_message.Message):
    __slots__ = ("user_id", "recipient", "template", "outcome", "email_id", "error", "job_id", "finished_at", "version")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    recipient: str
    template: EmailTemplate
    outcome: Outcome
    email_id: str
    error: str
    job_id: str
    finished_at: _timestamp_pb2.Timestamp
    version: int
    def __init__(self, user_id: _Optional[str] = ..., recipient: _Optional[str] = ..., template: _Optional[_Union[EmailTemplate, str]] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., email_id: _Optional[str] = ..., error: _Optional[str] = ..., job_id: _Optional[str] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class ConversionReport(_message.Message):
    __slots__ = ("conversion_id", "user_id", "outcome", "pdf_url", "pdf_url_expires_at", "result", "error", "job_id", "finished_at", "version")
    CONVERSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    PDF_URL_FIELD_NUMBER: _ClassVar[int]
    PDF_URL_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    conversion_id: str
    user_id: str
    outcome: Outcome
    pdf_url: str
    pdf_url_expires_at: _timestamp_pb2.Timestamp
    result: ConversionResult
    error: str
    job_id: str
    finished_at: _timestamp_pb2.Timestamp
    version: int
    def __init__(self, conversion_id: _Optional[str] = ..., user_id: _Optional[str] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., pdf_url: _Optional[str] = ..., pdf_url_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., result: _Optional[_Union[ConversionResult, _Mapping]] = ..., error: _Optional[str] = ..., job_id: _Optional[str] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...
