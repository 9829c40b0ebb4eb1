"""The file storage's presigned URLs on the running system (embedded defaults): tampered and
expired URLs are refused by user_svc's storage routes, and image_svc's fetch of an unsigned
storage URL is refused by the storage. (S3's own servers check their signatures; the
S3-compatible server used in tests does not, so these run on the file backend.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from mcsv.twirp import ErrorCode, TwirpError
from mcsv.v1 import image_pb2, job_pb2, user_pb2
from mcsv.v1.image_twirp import ImageServiceClient
from mcsv.v1.job_twirp import JobServiceClient
from mcsv.v1.user_twirp import UserServiceClient

from internal.storage import LocalStorage
from internal.supervisor import System
from tests.e2e.images import make_image
from tests.e2e.system import CONVERSION, as_user, peer, wait_for, whole_system

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with whole_system(tmp_path_factory.mktemp("urls"), workers=1) as running_system:
        yield running_system


@pytest.fixture(scope="module")
def users(system: System) -> Iterator[UserServiceClient]:
    with peer(system.settings, UserServiceClient) as client:
        yield client


def _stored_pdf_url(system: System, users: UserServiceClient) -> tuple[str, str]:
    owner = users.create_user(
        user_pb2.CreateUserRequest(name="Urls", email="urls@example.com")
    ).user
    accepted = users.convert_image(
        user_pb2.ConvertImageRequest(
            user_id=owner.id, filename="u.png", image_data=make_image("png", 200, 100)
        ),
        headers=as_user(system.settings, owner.id),
    ).conversion
    report = wait_for(system, CONVERSION, {accepted.id})[accepted.id]
    url = report.conversion_finished.pdf_url
    return url, urlsplit(url).path.removeprefix("/storage/")


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_tampered_and_expired_urls_are_refused(system: System, users: UserServiceClient) -> None:
    url, key = _stored_pdf_url(system, users)
    assert httpx.get(url).status_code == 200
    signature = parse_qs(urlsplit(url).query)["sig"][0]
    tampered = [
        _with_query(url, sig=("0" if signature[0] != "0" else "1") + signature[1:]),
        _with_query(url, expires=str(int(parse_qs(urlsplit(url).query)["expires"][0]) + 3600)),
        _with_query(url, method="PUT"),
        url.replace(key, key.replace(".pdf", "x.pdf")),
    ]
    for bad in tampered:
        assert httpx.get(bad).status_code == 403, bad
    settings = system.settings
    storage = LocalStorage(
        settings.data_dir / "storage",
        public_url=settings.storage_public_url,
        secret=settings.storage_secret,
    )
    expired = storage.presign_get(key, timedelta(seconds=-1))
    answer = httpx.get(expired)
    assert answer.status_code == 403 and "expired" in answer.text


def test_an_unsigned_url_on_the_storage_origin_is_refused_by_the_storage(system: System) -> None:
    origin = system.settings.storage_public_url
    with (
        peer(system.settings, ImageServiceClient, identity="job_svc") as images,
        pytest.raises(TwirpError) as refused,
    ):
        images.convert_to_pdf(
            image_pb2.ConvertToPdfRequest(
                conversion_id="x",
                source_url=f"{origin}/storage/uploads/anything.png",
                pdf_upload_url=f"{origin}/storage/pdfs/x.pdf",
            )
        )
    assert refused.value.code is ErrorCode.PERMISSION_DENIED
    assert "403" in refused.value.msg


def test_no_answer_shows_a_put_url_and_a_put_url_is_used_once(
    system: System, users: UserServiceClient
) -> None:
    """The review's leaked upload URLs: job_svc's answers hold none, a user's GetConversion
    has none, and a PUT URL of the PDF (as one leaked before) is refused once it exists."""
    url, key = _stored_pdf_url(system, users)
    conversion_id = key.removeprefix("pdfs/").removesuffix(".pdf")
    with peer(system.settings, JobServiceClient) as jobs:
        listed = jobs.list_jobs(job_pb2.ListJobsRequest(queue="conversions", page_size=100))
        assert listed.jobs and all("PUT" not in str(job) for job in listed.jobs)
        for job in listed.jobs:
            shown = jobs.get_job(job_pb2.GetJobRequest(id=job.id)).job
            assert "method=PUT" not in str(shown)
    seen = users.get_conversion(user_pb2.GetConversionRequest(id=conversion_id))
    assert seen.pdf_upload_url == ""  # the operator (and users) never get one
    settings = system.settings
    storage = LocalStorage(
        settings.data_dir / "storage",
        public_url=settings.storage_public_url,
        secret=settings.storage_secret,
    )
    replayed = storage.presign_put(key, timedelta(minutes=5), "application/pdf")
    before = httpx.get(url).content
    answer = httpx.put(
        replayed, content=b"%PDF-forged", headers={"Content-Type": "application/pdf"}
    )
    assert answer.status_code == 409
    assert httpx.get(url).content == before


def test_convert_to_pdf_refuses_a_put_url_of_another_conversion(system: System) -> None:
    settings = system.settings
    storage = LocalStorage(
        settings.data_dir / "storage",
        public_url=settings.storage_public_url,
        secret=settings.storage_secret,
    )
    theirs = storage.presign_put("pdfs/victim.pdf", timedelta(minutes=5), "application/pdf")
    with (
        peer(settings, ImageServiceClient, identity="job_svc") as images,
        pytest.raises(TwirpError) as refused,
    ):
        images.convert_to_pdf(
            image_pb2.ConvertToPdfRequest(
                conversion_id="attacker",
                source_url=storage.presign_get("uploads/attacker/a.png", timedelta(minutes=5)),
                pdf_upload_url=theirs,
            )
        )
    assert refused.value.code is ErrorCode.PERMISSION_DENIED
    assert refused.value.meta["argument"] == "pdf_upload_url"


def test_a_repeat_conversion_of_a_stored_pdf_succeeds_and_keeps_it(
    system: System, users: UserServiceClient
) -> None:
    """A worker killed after image_svc began storing the PDF: its retry gets a fresh PUT URL,
    but the first attempt's PDF is stored by then. The storage answers 409 (used once) and
    image_svc takes the stored PDF as this attempt's: the conversion succeeds, unchanged."""
    url, key = _stored_pdf_url(system, users)
    conversion_id = key.removeprefix("pdfs/").removesuffix(".pdf")
    settings = system.settings
    storage = LocalStorage(
        settings.data_dir / "storage",
        public_url=settings.storage_public_url,
        secret=settings.storage_secret,
    )
    source = "uploads/repeat/r.png"
    storage.put(source, make_image("png", 200, 100), "image/png")
    before = httpx.get(url).content
    with peer(settings, ImageServiceClient, identity="job_svc") as images:
        answer = images.convert_to_pdf(
            image_pb2.ConvertToPdfRequest(
                conversion_id=conversion_id,
                source_url=storage.presign_get(source, timedelta(minutes=5)),
                pdf_upload_url=storage.presign_put(key, timedelta(minutes=5), "application/pdf"),
            )
        )
    assert answer.result.pdf_bytes > 0
    assert httpx.get(url).content == before
