"""The API contract, checked from outside: schemathesis' command line, with
every check it has and every phase (examples, coverage, fuzzing, and the
stateful phase, which follows the document's links through an order's
lifecycle), for two minutes against the running gateway as a logged-in
customer. Its summary is printed; it must report no failure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.gateway.conftest import System, User

ST = Path(sys.executable).with_name("st")
CONFIG = Path(__file__).with_name("schemathesis.toml")
SECONDS = 130
PHASES = "examples,coverage,fuzzing,stateful"


def test_schemathesis_finds_no_failure_in_any_phase(
    system: System, ann: User, tmp_path: Path
) -> None:
    # Given a customer's token, when schemathesis runs everything it has
    run = subprocess.run(
        [
            str(ST),
            "--config-file",
            str(CONFIG),
            "run",
            f"{system.url}/openapi.json",
            "--checks",
            "all",
            "--phases",
            PHASES,
            "--max-time",
            str(SECONDS),
            "--header",
            f"Authorization: Bearer {ann.tokens['access_token']}",
            "--no-color",
        ],
        cwd=tmp_path,  # its .hypothesis folder
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
        check=False,
    )
    output = run.stdout + run.stderr
    # Each phase's figures (the stateful one's links covered), then the summary.
    print(output[output.find("Loaded specification") :])

    # then every phase passes
    assert run.returncode == 0, output[-20_000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in output
