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

class DeliveryBackend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_BACKEND_UNSPECIFIED: _ClassVar[DeliveryBackend]
    DELIVERY_BACKEND_MAILBOX: _ClassVar[DeliveryBackend]
    DELIVERY_BACKEND_SMTP: _ClassVar[DeliveryBackend]
DELIVERY_BACKEND_UNSPECIFIED: DeliveryBackend
DELIVERY_BACKEND_MAILBOX: DeliveryBackend
DELIVERY_BACKEND_SMTP: DeliveryBackend

class Email(_message.Message):
    __slots__ = ("id", "idempotency_key", "user_id", "recipient", "template", "subject", "text_body", "html_body", "backend", "delivered_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TEXT_BODY_FIELD_NUMBER: _ClassVar[int]
    HTML_BODY_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    idempotency_key: str
    user_id: str
    recipient: str
    template: _common_pb2.EmailTemplate
    subject: str
    text_body: str
    html_body: str
    backend: DeliveryBackend
    delivered_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., user_id: _Optional[str] = ..., recipient: _Optional[str] = ..., template: _Optional[_Union[_common_pb2.EmailTemplate, str]] = ..., subject: _Optional[str] = ..., text_body: _Optional[str] = ..., html_body: _Optional[str] = ..., backend: _Optional[_Union[DeliveryBackend, str]] = ..., delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DeliverEmailRequest(_message.Message):
    __slots__ = ("idempotency_key", "user_id", "user_name", "recipient", "template", "variables")
    class VariablesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    user_id: str
    user_name: str
    recipient: str
    template: _common_pb2.EmailTemplate
    variables: _containers.ScalarMap[str, str]
    def __init__(self, idempotency_key: _Optional[str] = ..., user_id: _Optional[str] = ..., user_name: _Optional[str] = ..., recipient: _Optional[str] = ..., template: _Optional[_Union[_common_pb2.EmailTemplate, str]] = ..., variables: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DeliverEmailResponse(_message.Message):
    __slots__ = ("email", "already_delivered")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ALREADY_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    email: Email
    already_delivered: bool
    def __init__(self, email: _Optional[_Union[Email, _Mapping]] = ..., already_delivered: _Optional[bool] = ...) -> None: ...

class ListEmailsRequest(_message.Message):
    __slots__ = ("recipient", "user_id", "page_size", "page_token")
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    recipient: str
    user_id: str
    page_size: int
    page_token: str
    def __init__(self, recipient: _Optional[str] = ..., user_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEmailsResponse(_message.Message):
    __slots__ = ("emails", "next_page_token")
    EMAILS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    emails: _containers.RepeatedCompositeFieldContainer[Email]
    next_page_token: str
    def __init__(self, emails: _Optional[_Iterable[_Union[Email, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetEmailRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetEmailResponse(_message.Message):
    __slots__ = ("email",)
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    email: Email
    def __init__(self, email: _Optional[_Union[Email, _Mapping]] = ...) -> None: ...
