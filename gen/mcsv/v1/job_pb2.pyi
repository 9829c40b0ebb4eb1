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

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_AVAILABLE: _ClassVar[JobState]
    JOB_STATE_SCHEDULED: _ClassVar[JobState]
    JOB_STATE_EXECUTING: _ClassVar[JobState]
    JOB_STATE_RETRYABLE: _ClassVar[JobState]
    JOB_STATE_COMPLETED: _ClassVar[JobState]
    JOB_STATE_DISCARDED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class JobEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_EVENT_TYPE_UNSPECIFIED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_ENQUEUED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_STARTED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_FAILED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_RETRY_SCHEDULED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_COMPLETED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_DISCARDED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_CANCELLED: _ClassVar[JobEventType]
    JOB_EVENT_TYPE_RETRIED: _ClassVar[JobEventType]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_AVAILABLE: JobState
JOB_STATE_SCHEDULED: JobState
JOB_STATE_EXECUTING: JobState
JOB_STATE_RETRYABLE: JobState
JOB_STATE_COMPLETED: JobState
JOB_STATE_DISCARDED: JobState
JOB_STATE_CANCELLED: JobState
JOB_EVENT_TYPE_UNSPECIFIED: JobEventType
JOB_EVENT_TYPE_ENQUEUED: JobEventType
JOB_EVENT_TYPE_STARTED: JobEventType
JOB_EVENT_TYPE_FAILED: JobEventType
JOB_EVENT_TYPE_RETRY_SCHEDULED: JobEventType
JOB_EVENT_TYPE_COMPLETED: JobEventType
JOB_EVENT_TYPE_DISCARDED: JobEventType
JOB_EVENT_TYPE_CANCELLED: JobEventType
JOB_EVENT_TYPE_RETRIED: JobEventType

class EmailJobArgs(_message.Message):
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

class ConversionJobArgs(_message.Message):
    __slots__ = ("conversion_id", "user_id", "user_name", "user_email", "filename", "source_url", "pdf_upload_url", "pdf_download_url", "pdf_download_url_expires_at", "options")
    CONVERSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_EMAIL_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URL_FIELD_NUMBER: _ClassVar[int]
    PDF_UPLOAD_URL_FIELD_NUMBER: _ClassVar[int]
    PDF_DOWNLOAD_URL_FIELD_NUMBER: _ClassVar[int]
    PDF_DOWNLOAD_URL_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    conversion_id: str
    user_id: str
    user_name: str
    user_email: str
    filename: str
    source_url: str
    pdf_upload_url: str
    pdf_download_url: str
    pdf_download_url_expires_at: _timestamp_pb2.Timestamp
    options: _common_pb2.ConversionOptions
    def __init__(self, conversion_id: _Optional[str] = ..., user_id: _Optional[str] = ..., user_name: _Optional[str] = ..., user_email: _Optional[str] = ..., filename: _Optional[str] = ..., source_url: _Optional[str] = ..., pdf_upload_url: _Optional[str] = ..., pdf_download_url: _Optional[str] = ..., pdf_download_url_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., options: _Optional[_Union[_common_pb2.ConversionOptions, _Mapping]] = ...) -> None: ...

class ReportJobArgs(_message.Message):
    __slots__ = ("email_delivered", "conversion_finished")
    EMAIL_DELIVERED_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_FINISHED_FIELD_NUMBER: _ClassVar[int]
    email_delivered: _common_pb2.EmailDelivery
    conversion_finished: _common_pb2.ConversionReport
    def __init__(self, email_delivered: _Optional[_Union[_common_pb2.EmailDelivery, _Mapping]] = ..., conversion_finished: _Optional[_Union[_common_pb2.ConversionReport, _Mapping]] = ...) -> None: ...

class JobAttemptError(_message.Message):
    __slots__ = ("attempt", "message", "failed_at")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    message: str
    failed_at: _timestamp_pb2.Timestamp
    def __init__(self, attempt: _Optional[int] = ..., message: _Optional[str] = ..., failed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "queue", "actor", "state", "attempt", "max_attempts", "errors", "inserted_at", "scheduled_at", "attempted_at", "finished_at", "worker", "email", "conversion", "report", "retry_until")
    ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    INSERTED_AT_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    RETRY_UNTIL_FIELD_NUMBER: _ClassVar[int]
    id: str
    queue: str
    actor: str
    state: JobState
    attempt: int
    max_attempts: int
    errors: _containers.RepeatedCompositeFieldContainer[JobAttemptError]
    inserted_at: _timestamp_pb2.Timestamp
    scheduled_at: _timestamp_pb2.Timestamp
    attempted_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    worker: str
    email: EmailJobArgs
    conversion: ConversionJobArgs
    report: ReportJobArgs
    retry_until: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., queue: _Optional[str] = ..., actor: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., attempt: _Optional[int] = ..., max_attempts: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[JobAttemptError, _Mapping]]] = ..., inserted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., worker: _Optional[str] = ..., email: _Optional[_Union[EmailJobArgs, _Mapping]] = ..., conversion: _Optional[_Union[ConversionJobArgs, _Mapping]] = ..., report: _Optional[_Union[ReportJobArgs, _Mapping]] = ..., retry_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "sequence", "type", "occurred_at", "attempt", "message", "worker")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    sequence: int
    type: JobEventType
    occurred_at: _timestamp_pb2.Timestamp
    attempt: int
    message: str
    worker: str
    def __init__(self, job_id: _Optional[str] = ..., sequence: _Optional[int] = ..., type: _Optional[_Union[JobEventType, str]] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., message: _Optional[str] = ..., worker: _Optional[str] = ...) -> None: ...

class QueueStats(_message.Message):
    __slots__ = ("queue", "available", "scheduled", "executing", "retryable", "completed", "discarded", "cancelled")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_FIELD_NUMBER: _ClassVar[int]
    EXECUTING_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    DISCARDED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    queue: str
    available: int
    scheduled: int
    executing: int
    retryable: int
    completed: int
    discarded: int
    cancelled: int
    def __init__(self, queue: _Optional[str] = ..., available: _Optional[int] = ..., scheduled: _Optional[int] = ..., executing: _Optional[int] = ..., retryable: _Optional[int] = ..., completed: _Optional[int] = ..., discarded: _Optional[int] = ..., cancelled: _Optional[int] = ...) -> None: ...

class EnqueueEmailRequest(_message.Message):
    __slots__ = ("args",)
    ARGS_FIELD_NUMBER: _ClassVar[int]
    args: EmailJobArgs
    def __init__(self, args: _Optional[_Union[EmailJobArgs, _Mapping]] = ...) -> None: ...

class EnqueueEmailResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class EnqueueConversionRequest(_message.Message):
    __slots__ = ("args",)
    ARGS_FIELD_NUMBER: _ClassVar[int]
    args: ConversionJobArgs
    def __init__(self, args: _Optional[_Union[ConversionJobArgs, _Mapping]] = ...) -> None: ...

class EnqueueConversionResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job", "events")
    JOB_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    job: Job
    events: _containers.RepeatedCompositeFieldContainer[JobEvent]
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., events: _Optional[_Iterable[_Union[JobEvent, _Mapping]]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("queue", "state", "actor", "page_size", "page_token")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    queue: str
    state: JobState
    actor: str
    page_size: int
    page_token: str
    def __init__(self, queue: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., actor: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class RetryJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RetryJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetQueueStatsRequest(_message.Message):
    __slots__ = ("queue",)
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    queue: str
    def __init__(self, queue: _Optional[str] = ...) -> None: ...

class GetQueueStatsResponse(_message.Message):
    __slots__ = ("queues",)
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[QueueStats]
    def __init__(self, queues: _Optional[_Iterable[_Union[QueueStats, _Mapping]]] = ...) -> None: ...
