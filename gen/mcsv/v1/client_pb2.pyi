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

class NotificationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTIFICATION_KIND_UNSPECIFIED: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_EMAIL_DELIVERED: _ClassVar[NotificationKind]
    NOTIFICATION_KIND_CONVERSION_FINISHED: _ClassVar[NotificationKind]
NOTIFICATION_KIND_UNSPECIFIED: NotificationKind
NOTIFICATION_KIND_EMAIL_DELIVERED: NotificationKind
NOTIFICATION_KIND_CONVERSION_FINISHED: NotificationKind

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
    __slots__ = ("first_delivery", "stored")
    FIRST_DELIVERY_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    first_delivery: bool
    stored: bool
    def __init__(self, first_delivery: _Optional[bool] = ..., stored: _Optional[bool] = ...) -> None: ...

class Notification(_message.Message):
    __slots__ = ("sequence", "notification_id", "kind", "subject_id", "received_at", "sent_at", "email_delivered", "conversion_finished")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    EMAIL_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_FINISHED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    notification_id: str
    kind: NotificationKind
    subject_id: str
    received_at: _timestamp_pb2.Timestamp
    sent_at: _timestamp_pb2.Timestamp
    email_delivered: _common_pb2.EmailDelivery
    conversion_finished: _common_pb2.ConversionReport
    def __init__(self, sequence: _Optional[int] = ..., notification_id: _Optional[str] = ..., kind: _Optional[_Union[NotificationKind, str]] = ..., subject_id: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., email_delivered: _Optional[_Union[_common_pb2.EmailDelivery, _Mapping]] = ..., conversion_finished: _Optional[_Union[_common_pb2.ConversionReport, _Mapping]] = ...) -> None: ...

class ListNotificationsRequest(_message.Message):
    __slots__ = ("since_sequence", "kind", "page_size", "page_token", "wait_ms")
    SINCE_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    since_sequence: int
    kind: NotificationKind
    page_size: int
    page_token: str
    wait_ms: int
    def __init__(self, since_sequence: _Optional[int] = ..., kind: _Optional[_Union[NotificationKind, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class ListNotificationsResponse(_message.Message):
    __slots__ = ("notifications", "next_page_token", "latest_sequence")
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LATEST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    notifications: _containers.RepeatedCompositeFieldContainer[Notification]
    next_page_token: str
    latest_sequence: int
    def __init__(self, notifications: _Optional[_Iterable[_Union[Notification, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., latest_sequence: _Optional[int] = ...) -> None: ...
