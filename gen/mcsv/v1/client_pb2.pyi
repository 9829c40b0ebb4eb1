import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mcsv.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReceiveNotificationRequest(_message.Message):
    __slots__ = ("notification_id", "sent_at", "email_delivered", "conversion_finished")
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    EMAIL_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_FINISHED_FIELD_NUMBER: _ClassVar[int]
    notification_id: str
    sent_at: _timestamp_pb2.Timestamp
    email_delivered: _common_pb2.EmailDelivery
    conversion_finished: _common_pb2.ConversionReport
    def __init__(self, notification_id: _Optional[str] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., email_delivered: _Optional[_Union[_common_pb2.EmailDelivery, _Mapping]] = ..., conversion_finished: _Optional[_Union[_common_pb2.ConversionReport, _Mapping]] = ...) -> None: ...

class ReceiveNotificationResponse(_message.Message):
    __slots__ = ("first_delivery",)
    FIRST_DELIVERY_FIELD_NUMBER: _ClassVar[int]
    first_delivery: bool
    def __init__(self, first_delivery: _Optional[bool] = ...) -> None: ...
