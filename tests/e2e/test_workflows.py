"""Both workflows end to end on the embedded defaults: the five services and two job workers
as real processes on loopback ports, SQLite, the SQLite broker, file storage, the mailbox and
ImageMagick. Also the bad input a user can send, the URLs image_svc must refuse, and an upload
repeated with its idempotency key."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pypdf
import pytest
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import client_pb2, common_pb2, email_pb2, image_pb2, job_pb2, user_pb2
from mcsv.v1.client_twirp import ClientServiceClient
from mcsv.v1.email_twirp import EmailServiceClient
from mcsv.v1.image_twirp import ImageServiceClient
from mcsv.v1.job_twirp import JobServiceClient
from mcsv.v1.user_twirp import AsyncUserServiceClient, UserServiceClient

from internal import registry
from internal.auth import OPERATOR
from internal.auth.pages import login_url
from internal.peers import AsyncPeers
from internal.storage import open_storage
from internal.supervisor import System
from tests.e2e.backends import BACKENDS, backend_env
from tests.e2e.images import make_image
from tests.e2e.system import (
    CONVERSION,
    EMAIL,
    as_user,
    notifications_client,
    peer,
    succeeded,
    wait_for,
    whole_system,
)

pytestmark = pytest.mark.slow
MAX_UPLOAD = 2 * 1024 * 1024


@pytest.fixture(scope="module", params=BACKENDS)
def system(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str
) -> Iterator[System]:
    with (
        backend_env(request.param, s3_endpoint) as backend,
        whole_system(
            tmp_path_factory.mktemp(request.param), env=backend, MAX_UPLOAD_BYTES=str(MAX_UPLOAD)
        ) as running_system,
    ):
        yield running_system


@pytest.fixture(scope="module")
def users(system: System) -> Iterator[UserServiceClient]:
    with peer(system.settings, UserServiceClient) as client:
        yield client


def test_200_welcome_emails_at_concurrency_10_all_arrive(system: System) -> None:
    async def create_all() -> dict[str, user_pb2.User]:
        limit = asyncio.Semaphore(10)
        async with AsyncPeers(system.settings, identity=OPERATOR) as peers:
            client = peers.client(AsyncUserServiceClient)

            async def create(index: int) -> user_pb2.User:
                async with limit:
                    answer = await client.create_user(
                        user_pb2.CreateUserRequest(
                            name=f"Person {index}", email=f"person{index}@example.com"
                        )
                    )
                    return answer.user

            created = await asyncio.gather(*(create(i) for i in range(200)))
        return {user.id: user for user in created}

    created = asyncio.run(create_all())
    arrived = wait_for(system, EMAIL, set(created))
    assert all(succeeded(r) for r in arrived.values())
    with peer(system.settings, EmailServiceClient) as emails:
        for user_id, received in arrived.items():
            delivery = received.email_delivered
            email = emails.get_email(email_pb2.GetEmailRequest(id=delivery.email_id)).email
            user = created[user_id]
            assert email.recipient == user.email
            assert email.template == common_pb2.EMAIL_TEMPLATE_WELCOME
            assert user.name in email.text_body and user.name in email.html_body
        mailbox = emails.list_emails(email_pb2.ListEmailsRequest(page_size=1000)).emails
    assert {e.user_id for e in mailbox} >= set(created)
    assert len([e for e in mailbox if e.user_id in created]) == 200  # one email each, no more


@pytest.mark.parametrize(
    ("fmt", "quality", "density"),
    [("png", common_pb2.PDF_QUALITY_LOW, 72), ("jpeg", common_pb2.PDF_QUALITY_HIGH, 200)],
)
def test_a_conversion_gives_a_pdf_of_the_right_page_size_a_link_and_an_email(
    system: System, users: UserServiceClient, fmt: str, quality: common_pb2.PdfQuality, density: int
) -> None:
    owner = users.create_user(
        user_pb2.CreateUserRequest(name=f"Converter {fmt}", email=f"convert-{fmt}@example.com")
    ).user
    image = make_image(fmt, 1200, 900)
    accepted = users.convert_image(
        user_pb2.ConvertImageRequest(
            user_id=owner.id,
            filename=f"picture.{fmt}",
            image_data=image,
            options=common_pb2.ConversionOptions(quality=quality, max_width=600),
        ),
        headers=as_user(system.settings, owner.id),
    ).conversion
    assert accepted.state == user_pb2.CONVERSION_STATE_PENDING
    report = wait_for(system, CONVERSION, {accepted.id})[accepted.id]
    finished = report.conversion_finished
    assert finished.outcome == common_pb2.OUTCOME_SUCCEEDED, finished.error
    result = finished.result
    assert (result.source_width, result.source_height) == (1200, 900)
    assert (result.output_width, result.output_height) == (600, 450)  # shrunk, aspect kept
    assert result.source_bytes == len(image)

    pdf = httpx.get(finished.pdf_url)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert len(pdf.content) == result.pdf_bytes
    page = pypdf.PdfReader(io.BytesIO(pdf.content)).pages
    assert len(page) == 1
    width, height = float(page[0].mediabox.width), float(page[0].mediabox.height)
    assert width == pytest.approx(600 / density * 72, abs=1)
    assert height == pytest.approx(450 / density * 72, abs=1)
    assert (width, height) == pytest.approx(
        (result.page_width_points, result.page_height_points), abs=0.5
    )

    stored = users.get_conversion(user_pb2.GetConversionRequest(id=accepted.id)).conversion
    assert stored.state == user_pb2.CONVERSION_STATE_SUCCEEDED
    with peer(system.settings, EmailServiceClient) as emails:
        sent = emails.list_emails(email_pb2.ListEmailsRequest(user_id=owner.id)).emails
        templates = {e.template for e in sent}
        assert common_pb2.EMAIL_TEMPLATE_CONVERSION_COMPLETE in templates
        done = next(e for e in sent if e.template == common_pb2.EMAIL_TEMPLATE_CONVERSION_COMPLETE)
        body = emails.get_email(email_pb2.GetEmailRequest(id=done.id)).email
    assert "picture." in body.text_body and finished.pdf_url in body.text_body
    # The original image is removed once the PDF exists.
    settings = system.settings
    store = open_storage(
        settings.storage_url, public_url=settings.storage_public_url, secret=settings.storage_secret
    )
    assert not store.exists(f"uploads/{accepted.id}/picture.{fmt}")
    assert store.exists(f"pdfs/{accepted.id}.pdf")


def test_a_corrupt_image_is_a_failed_conversion_reported_and_recorded(
    system: System, users: UserServiceClient
) -> None:
    owner = users.create_user(
        user_pb2.CreateUserRequest(name="Corrupt", email="corrupt@example.com")
    ).user
    accepted = users.convert_image(
        user_pb2.ConvertImageRequest(
            user_id=owner.id, filename="broken.png", image_data=b"\x89PNG not really an image"
        ),
        headers=as_user(system.settings, owner.id),
    ).conversion
    finished = wait_for(system, CONVERSION, {accepted.id})[accepted.id]
    report = finished.conversion_finished
    assert report.outcome == common_pb2.OUTCOME_FAILED
    assert "refused" in report.error
    with peer(system.settings, JobServiceClient) as jobs:
        job = jobs.get_job(job_pb2.GetJobRequest(id=accepted.job_id))
    assert job.job.state == job_pb2.JOB_STATE_DISCARDED
    assert job.job.attempt == 1  # bad input is not retried
    assert "refused" in job.job.errors[0].message
    stored = users.get_conversion(user_pb2.GetConversionRequest(id=accepted.id)).conversion
    assert stored.state == user_pb2.CONVERSION_STATE_FAILED and stored.error


def test_a_repeated_upload_with_the_same_key_is_one_conversion_converted_once(
    system: System, users: UserServiceClient
) -> None:
    owner, other = (
        users.create_user(
            user_pb2.CreateUserRequest(name=name, email=f"{name.lower()}-key@example.com")
        ).user
        for name in ("Keyed", "Other")
    )

    def upload(user_id: str, key: str, seed: int) -> user_pb2.Conversion:
        return users.convert_image(
            user_pb2.ConvertImageRequest(
                user_id=user_id,
                filename=f"keyed-{seed}.png",
                image_data=make_image("png", 200, 100, seed=seed),
                options=common_pb2.ConversionOptions(quality=common_pb2.PDF_QUALITY_LOW),
                idempotency_key=key,
            ),
            headers=as_user(system.settings, user_id),
        ).conversion

    first = upload(owner.id, "upload-1", seed=1)
    again = upload(owner.id, "upload-1", seed=1)  # the answer was lost: asked again
    different = upload(owner.id, "upload-1", seed=2)  # the same key: the first one wins
    assert again.id == different.id == first.id and again.filename == "keyed-1.png"
    second = upload(owner.id, "upload-2", seed=1)
    theirs = upload(other.id, "upload-1", seed=1)  # keys are per user
    assert len({first.id, second.id, theirs.id}) == 3

    finished = wait_for(system, CONVERSION, {first.id, second.id, theirs.id})
    assert all(succeeded(n) for n in finished.values())
    assert upload(owner.id, "upload-1", seed=1).state == user_pb2.CONVERSION_STATE_SUCCEEDED
    with peer(system.settings, EmailServiceClient) as emails:
        sent = emails.list_emails(email_pb2.ListEmailsRequest(user_id=owner.id)).emails
    converted = [e for e in sent if e.template == common_pb2.EMAIL_TEMPLATE_CONVERSION_COMPLETE]
    assert len(converted) == 2  # upload-1 once, upload-2 once
    with peer(system.settings, JobServiceClient) as jobs:
        listed = jobs.list_jobs(job_pb2.ListJobsRequest(actor="convert_image", page_size=1000))
    assert sum(j.conversion.conversion_id == first.id for j in listed.jobs) == 1
    with pytest.raises(TwirpError) as refused:
        upload(owner.id, "k" * 201, seed=1)
    assert refused.value.code is ErrorCode.INVALID_ARGUMENT
    assert refused.value.meta["argument"] == "idempotency_key"


ListRequest = client_pb2.ListNotificationsRequest


def every_notification(
    client: ClientServiceClient, request: ListRequest
) -> list[client_pb2.Notification]:
    """Every page of a listing, following next_page_token with the same filters."""
    found: list[client_pb2.Notification] = []
    while True:
        page = client.list_notifications(request)
        assert len(page.notifications) <= request.page_size
        found += page.notifications
        if not page.next_page_token:
            return found
        following = ListRequest()
        following.CopyFrom(request)
        following.page_token = page.next_page_token
        request = following


def test_list_notifications_pages_through_many_with_since_and_kind(
    system: System, users: UserServiceClient
) -> None:
    with notifications_client(system) as notifications:
        start = notifications.list_notifications(ListRequest(page_size=1)).latest_sequence
        created = {
            users.create_user(
                user_pb2.CreateUserRequest(name=f"Lister {i}", email=f"lister{i}@example.com")
            ).user.id
            for i in range(30)
        }
        owner = sorted(created)[0]
        converted = {
            users.convert_image(
                user_pb2.ConvertImageRequest(
                    user_id=owner, filename=f"small-{i}.png", image_data=make_image("png", 64, 48)
                ),
                headers=as_user(system.settings, owner),
            ).conversion.id
            for i in range(2)
        }
        wait_for(system, EMAIL, created)
        wait_for(system, CONVERSION, converted)

        listed = every_notification(notifications, ListRequest(since_sequence=start, page_size=7))
        # Other tests' stragglers may arrive meanwhile; they come after `last`.
        last = listed[-1].sequence
        sequences = [n.sequence for n in listed]
        assert sequences == sorted(set(sequences)) and sequences[0] > start
        ours = [n for n in listed if n.subject_id in created | converted]
        assert sorted(n.subject_id for n in ours) == sorted(created | converted)  # once each
        assert all(n.received_at.seconds and n.sent_at.seconds for n in ours)
        assert all(n.kind == (EMAIL if n.subject_id in created else CONVERSION) for n in ours)

        def upto_last(request: ListRequest) -> list[client_pb2.Notification]:
            return [n for n in every_notification(notifications, request) if n.sequence <= last]

        for kind, size in ((EMAIL, 5), (CONVERSION, 1)):
            of_kind = upto_last(ListRequest(since_sequence=start, kind=kind, page_size=size))
            assert of_kind == [n for n in listed if n.kind == kind]
        middle = listed[len(listed) // 2].sequence
        after_middle = [n for n in listed if n.sequence > middle]
        assert upto_last(ListRequest(since_sequence=middle, page_size=4)) == after_middle
        assert upto_last(ListRequest(since_sequence=middle, kind=EMAIL, page_size=3)) == [
            n for n in after_middle if n.kind == EMAIL
        ]
        with pytest.raises(TwirpError) as refused:
            notifications.list_notifications(ListRequest(page_token="no such token"))
    assert refused.value.code is ErrorCode.INVALID_ARGUMENT
    assert refused.value.meta["argument"] == "page_token"


@pytest.mark.parametrize(
    ("request_", "argument"),
    [
        (user_pb2.CreateUserRequest(name="No Email"), "email"),
        (user_pb2.CreateUserRequest(email="nameless@example.com"), "name"),
        (user_pb2.CreateUserRequest(name="Bad", email="not-an-address"), "email"),
    ],
)
def test_invalid_users_are_invalid_argument_naming_the_field(
    users: UserServiceClient, request_: user_pb2.CreateUserRequest, argument: str
) -> None:
    with pytest.raises(TwirpError) as refused:
        users.create_user(request_)
    assert refused.value.code is ErrorCode.INVALID_ARGUMENT
    assert refused.value.meta["argument"] == argument


def test_upload_errors_are_clear(system: System, users: UserServiceClient) -> None:
    owner = users.create_user(user_pb2.CreateUserRequest(name="Up", email="up@example.com")).user
    upload = user_pb2.ConvertImageRequest
    cases = [
        (upload(user_id="nobody", filename="a.png", image_data=b"x"), ErrorCode.NOT_FOUND),
        (upload(user_id=owner.id, filename="a.png"), ErrorCode.INVALID_ARGUMENT),
        (upload(user_id=owner.id, image_data=b"x"), ErrorCode.INVALID_ARGUMENT),
    ]
    for request, code in cases:
        with pytest.raises(TwirpError) as refused:
            users.convert_image(request, headers=as_user(system.settings, request.user_id))
        assert refused.value.code is code
    too_big = user_pb2.ConvertImageRequest(
        user_id=owner.id, filename="big.png", image_data=b"\0" * (MAX_UPLOAD + 1)
    )
    with pytest.raises(TwirpError) as refused:
        users.convert_image(too_big, headers=as_user(system.settings, owner.id))
    assert refused.value.code is ErrorCode.INVALID_ARGUMENT
    assert str(MAX_UPLOAD) in refused.value.msg


def test_unknown_ids_are_not_found(system: System, users: UserServiceClient) -> None:
    with peer(system.settings, JobServiceClient) as jobs:
        for call in (
            lambda: users.get_user(user_pb2.GetUserRequest(id="nope")),
            lambda: users.get_conversion(user_pb2.GetConversionRequest(id="nope")),
            lambda: jobs.get_job(job_pb2.GetJobRequest(id="nope")),
        ):
            with pytest.raises(TwirpError) as missing:
                call()
            assert missing.value.code is ErrorCode.NOT_FOUND


@pytest.mark.parametrize(
    "source_url",
    [
        "http://127.0.0.2:9/storage/uploads/x.png",
        "https://example.com/image.png",
        "file:///etc/passwd",
        "http://user@{origin}/storage/x.png",
    ],
)
def test_image_svc_refuses_urls_outside_the_storage(system: System, source_url: str) -> None:
    origin = urlsplit(system.settings.storage_public_url).netloc
    with (
        peer(system.settings, ImageServiceClient, identity="job_svc") as images,
        pytest.raises(TwirpError) as refused,
    ):
        images.convert_to_pdf(
            image_pb2.ConvertToPdfRequest(
                source_url=source_url.format(origin=origin),
                pdf_upload_url=f"http://{origin}/storage/pdfs/x.pdf",
            )
        )
    assert refused.value.code is ErrorCode.PERMISSION_DENIED
    assert refused.value.meta["argument"] == "source_url"


def test_readiness_and_health(system: System) -> None:
    for service in registry.NAMES:
        ready = httpx.get(system.settings.url(service) + "/ready")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert httpx.get(system.settings.url(service) + "/health").status_code == 200
    mailbox_url = system.settings.url("email_svc") + "/mailbox"
    assert httpx.get(mailbox_url).status_code == 401  # the operator's only
    link = login_url(system.settings, mailbox_url)  # what `just up` prints
    assert link.startswith(f"{mailbox_url}/login#token=")  # a fragment: never sent, never logged
    with httpx.Client(follow_redirects=True) as browser:
        form = browser.get(link)  # the login page, whose script posts the fragment's token
        assert form.status_code == 200 and "<input name=token" in form.text
        mailbox = browser.post(
            f"{mailbox_url}/login", data={"token": system.settings.operator_token}
        )
        assert mailbox.status_code == 200 and "Mailbox" in mailbox.text
        assert "token" not in str(mailbox.url)  # the address keeps no token
        assert browser.get(mailbox_url).status_code == 200  # the cookie signs it in
    assert httpx.get(f"{mailbox_url}/login?token=guess").status_code == 401
    assert httpx.post(f"{mailbox_url}/login", data={"token": "guess"}).status_code == 401


def test_queue_stats_account_for_every_job(system: System) -> None:
    with peer(system.settings, JobServiceClient) as jobs:
        stats = {s.queue: s for s in jobs.get_queue_stats(job_pb2.GetQueueStatsRequest()).queues}
        listed = jobs.list_jobs(job_pb2.ListJobsRequest(queue="emails", page_size=5))
    assert stats["emails"].completed >= 200
    assert stats["emails"].available == stats["emails"].executing == 0
    assert len(listed.jobs) == 5 and listed.next_page_token
