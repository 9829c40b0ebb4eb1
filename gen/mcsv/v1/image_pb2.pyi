from mcsv.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConvertToPdfRequest(_message.Message):
    __slots__ = ("conversion_id", "source_url", "pdf_upload_url", "options")
    CONVERSION_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URL_FIELD_NUMBER: _ClassVar[int]
    PDF_UPLOAD_URL_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    conversion_id: str
    source_url: str
    pdf_upload_url: str
    options: _common_pb2.ConversionOptions
    def __init__(self, conversion_id: _Optional[str] = ..., source_url: _Optional[str] = ..., pdf_upload_url: _Optional[str] = ..., options: _Optional[_Union[_common_pb2.ConversionOptions, _Mapping]] = ...) -> None: ...

class ConvertToPdfResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _common_pb2.ConversionResult
    def __init__(self, result: _Optional[_Union[_common_pb2.ConversionResult, _Mapping]] = ...) -> None: ...
