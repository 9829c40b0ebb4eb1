"""Where protoc-gen-mcsv-twirp writes its runtime by default, and why that matters: for a proto
package whose first segment is `twirp` (twirp.example.v1) the runtime must not go into a
`twirp` package (the name of the PyPI twirp package), and the generated code must generate,
import and serve on its own. A runtime that would land where a .proto is generated is refused.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from internal.codegen.plugin import default_runtime
from tests.codegen.helpers import buf_generate, run, tree
from tests.support.servers import free_port, serving, uvicorn_argv

EXAMPLE_PROTO = """\
syntax = "proto3";

package twirp.example.v1;

enum Mood {
  MOOD_UNSPECIFIED = 0;
  MOOD_GLAD = 1;
}

message SayRequest {
  string text = 1;
  Mood mood = 2;
}

message SayResponse {
  string text = 1;
  Mood mood = 2;
}

// Says things back.
service EchoService {
  // Answers the text upper-cased.
  rpc Say(SayRequest) returns (SayResponse);
}
"""

APP = """\
from twirp_runtime import Context, TwirpApp
from twirp.example.v1 import example_pb2, example_twirp
from twirp.example.v1.example_twirp_server import EchoServiceServer


class Echo:
    async def say(self, ctx: Context, request: example_pb2.SayRequest) -> example_pb2.SayResponse:
        return example_pb2.SayResponse(text=request.text.upper(), mood=request.mood)


echo: example_twirp.EchoService = Echo()
app = TwirpApp(EchoServiceServer(service=echo))
"""

CALLER = """\
import json, sys
import twirp
from twirp.example.v1 import example_pb2
from twirp.example.v1.example_twirp import EchoServiceClient
from twirp_runtime import TwirpError

answers = {"twirp_package_file": twirp.__file__}
for use_json in (False, True):
    with EchoServiceClient(sys.argv[1], use_json=use_json) as client:
        said = client.say(example_pb2.SayRequest(text="hi", mood=example_pb2.MOOD_GLAD))
        try:
            client.say(example_pb2.SayRequest(mood=7))
            error = None
        except TwirpError as exc:
            error = [exc.code.value, exc.meta]
    answers["json" if use_json else "protobuf"] = [said.text, said.mood, error]
print(json.dumps(answers))
"""


def test_the_default_runtime_name() -> None:
    assert default_runtime("mcsv.v1") == "mcsv.twirp"
    assert default_runtime("golden.v1") == "golden.twirp"
    assert default_runtime("twirp.example.v1") == "twirp_runtime"
    assert default_runtime("twirpx.v1") == "twirpx.twirp"


def _module(tmp_path: Path, path: str, proto: str) -> Path:
    module = tmp_path / "module"
    (module / path).parent.mkdir(parents=True)
    (module / "buf.yaml").write_text("version: v2\n")
    (module / path).write_text(proto)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("twirp-package")
    module = _module(base, "twirp/example/v1/example.proto", EXAMPLE_PROTO)
    out = base / "out"
    result = buf_generate(
        module,
        [
            {"local": "protoc-gen-mcsv-twirp", "out": str(out), "strategy": "all"},
            {"protoc_builtin": "python", "out": str(out)},
            {"protoc_builtin": "pyi", "out": str(out)},
        ],
    )
    assert result.returncode == 0, result.stderr
    return out


def test_a_twirp_package_gets_a_runtime_outside_any_twirp_package(generated: Path) -> None:
    names = set(tree(generated))
    assert {"twirp_runtime/server.py", "twirp_runtime/client.py", "twirp_runtime/py.typed"} <= names
    assert not any(name.startswith("twirp/twirp/") for name in names)
    assert {"twirp/py.typed", "twirp/example/v1/example_twirp_server.py"} <= names
    server = (generated / "twirp/example/v1/example_twirp_server.py").read_text()
    assert "from twirp_runtime.server import Endpoint, ServiceServer" in server
    imports = [line for line in server.splitlines() if line.startswith(("import ", "from "))]
    twirp_imports = [line for line in imports if line.split()[1].split(".")[0] == "twirp"]
    assert twirp_imports == [
        "from twirp.example.v1 import example_pb2",
        "from twirp.example.v1 import example_twirp",
    ]  # the generated package only, nothing of the PyPI twirp package


def test_a_twirp_package_generates_imports_and_serves(generated: Path) -> None:
    (generated / "echo_app.py").write_text(APP)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = uvicorn_argv("echo_app:app", port)
    env = {"PYTHONPATH": str(generated)}
    with serving(f"twirp-package-{port}", argv, url + "/", env=env, ready=lambda a: True):
        result = run(
            [sys.executable, "-c", CALLER, url],
            cwd=generated,
            env={**os.environ, "PYTHONPATH": str(generated)},
        )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    # the generated `twirp` package is the one imported: it owes nothing to the PyPI one
    assert Path(answers["twirp_package_file"]).resolve().is_relative_to(generated.resolve())
    unknown_mood = ["invalid_argument", {"argument": "mood"}]
    assert answers["protobuf"] == ["HI", 1, unknown_mood]
    assert answers["json"] == ["HI", 1, unknown_mood]


def test_a_runtime_where_a_proto_is_generated_is_refused(tmp_path: Path) -> None:
    proto = (
        'syntax = "proto3";\npackage mcsv.twirp;\nmessage R {}\n'
        "service S { rpc Get(R) returns (R); }\n"
    )
    module = _module(tmp_path, "mcsv/twirp/s.proto", proto)
    out = tmp_path / "out"
    result = buf_generate(
        module, [{"local": "protoc-gen-mcsv-twirp", "out": str(out), "strategy": "all"}]
    )
    assert result.returncode != 0
    assert (
        "the runtime package mcsv.twirp is where mcsv/twirp/s.proto is generated" in result.stderr
    )
    assert "runtime=<package>" in result.stderr
