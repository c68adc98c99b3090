"""The Orthanc recipe (integrations/orthanc/), end to end: a real Orthanc on loopback with the recipe's
configuration and plugin, and `medimage up` with PacsStowUrl pointing back at it.

A DICOM sent to Orthanc by `storescu`, as a modality sends it, is forwarded by the plugin to the
pipeline's STOW-RS endpoint, labeled by drop-to-label, and its SR comes back by STOW-RS into the same
study, where a QIDO-RS query finds it; the SR read back (WADO-RS, highdicom) states the result's finding,
probability and model version, and dciodvfy finds no error in it.

Orthanc, its plugins, DCMTK and dicom3tools are Debian packages (`make orthanc-deps`): without them the
test skips, except in CI (CI set), where it fails.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pydicom
import pytest

from medimage.core.dicomweb import instance_name, parse_stow_body
from medimage.core.layout import prediction_key
from medimage.inference.stow import stow_key
from medimage.results import codes
from medimage.results.sr import read_report
from tests.dicom_factory import PHI_VALUES, make_dicom, reference_image
from tests.e2e.local_stack import free_port, running_up, wait_for
from tests.inference.conftest import build_model_dir, publish

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "integrations" / "orthanc"
DS = "chestxray2017"
USER, PASSWORD = "medimage", "pacs-test-password"
SECRET_NAME = "medimage-pacs"
# A partial ARN (no random suffix): Secrets Manager resolves it, and it is known before the secret exists.
SECRET_ARN = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{SECRET_NAME}"
NEEDED = {
    "Orthanc": "/usr/sbin/Orthanc",
    "DICOMweb plugin": "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "Python plugin": "/usr/share/orthanc/plugins/libOrthancPython.so",
    "storescu (dcmtk)": "/usr/bin/storescu",
}


def require_orthanc() -> None:
    missing = [name for name, path in NEEDED.items() if not Path(path).exists()]
    if missing:
        message = f"{', '.join(missing)} absent: run `make orthanc-deps`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def pacs_get(base: str, path: str, accept: str = "application/dicom+json") -> tuple[int, bytes, str]:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(
        base + path, headers={"Authorization": f"Basic {token}", "Accept": accept}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), ""
    except urllib.error.URLError:  # not listening yet
        return 0, b"", ""


@pytest.fixture
def up(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`medimage up` whose PACS is the Orthanc of the `orthanc` fixture (its ports chosen here)."""
    require_orthanc()
    orthanc_http = free_port()
    with running_up(
        tmp_path / "up",
        tmp_path / "up.out",
        [
            *("--parameter", f"PacsStowUrl=http://127.0.0.1:{orthanc_http}/dicom-web"),
            *("--parameter", f"PacsCredentialsSecretArn={SECRET_ARN}"),
        ],
    ) as running:
        workdir = tmp_path / "up"
        yield {**running.stack, "proc": running.proc, "orthanc_http": orthanc_http, "workdir": workdir}


@pytest.fixture
def orthanc(up: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Orthanc with the recipe's configuration, on loopback ports, storing in a temporary folder."""
    config = json.loads((RECIPE / "orthanc.json").read_text(encoding="utf-8"))
    storage = tmp_path / "orthanc-db"
    dicom_port = free_port()
    config.update(
        StorageDirectory=str(storage),
        IndexDirectory=str(storage),
        HttpPort=up["orthanc_http"],
        DicomPort=dicom_port,
        RemoteAccessAllowed=False,
        RegisteredUsers={USER: PASSWORD},
        StableAge=1,
        PythonScript=str(RECIPE / "forward.py"),
    )
    config["Medimage"]["StowUrl"] = f"{up['api_url']}datasets/{DS}/studies"
    path = tmp_path / "orthanc.json"
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")
    log = (tmp_path / "orthanc.log").open("w")
    proc = subprocess.Popen(["/usr/sbin/Orthanc", str(path)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{up['orthanc_http']}"
    try:
        wait_for("Orthanc", lambda: pacs_get(base, "/dicom-web/studies")[0] == 200, proc, timeout_s=60)
        yield {"base": base, "dicom_port": dicom_port, "log": tmp_path / "orthanc.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()


def test_a_study_sent_to_orthanc_gets_its_sr_back_in_the_same_study(
    up: dict[str, Any], orthanc: dict[str, Any], tmp_path: Path
) -> None:
    # GIVEN a production model in `up`'s bucket and the PACS credentials in its Secrets Manager
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    s3 = session.client("s3", endpoint_url=up["endpoint_url"])
    secrets = session.client("secretsmanager", endpoint_url=up["endpoint_url"])
    secrets.create_secret(Name=SECRET_NAME, SecretString=json.dumps({"username": USER, "password": PASSWORD}))
    publish(s3, build_model_dir(tmp_path / "model", seed=1), "v1", bucket=up["bucket"])

    # WHEN a modality sends a chest X-ray to Orthanc by C-STORE
    scan = tmp_path / "scan.dcm"
    scan.write_bytes(make_dicom(reference_image(64, 80), modality="CR"))
    source = pydicom.dcmread(scan)
    sent = subprocess.run(
        ["storescu", "-aec", "ORTHANC", "127.0.0.1", str(orthanc["dicom_port"]), str(scan)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr

    # THEN the plugin forwards it, drop-to-label labels it, and the SR is found in the study by QIDO-RS
    study = source.StudyInstanceUID
    query = f"/dicom-web/studies/{study}/instances?Modality=SR"

    def sr_in_study() -> list[dict[str, Any]]:
        status, body, _ = pacs_get(orthanc["base"], query)
        return json.loads(body) if status == 200 and body.strip() else []

    try:
        [found] = wait_for("the SR in Orthanc", sr_in_study, up["proc"], timeout_s=180)
    except AssertionError:
        print(orthanc["log"].read_text()[-3000:], (up["workdir"] / "lambda.log").read_text()[-3000:])
        raise
    series, instance = found["0020000E"]["Value"][0], found["00080018"]["Value"][0]
    key = stow_key(DS, instance_name(study, source.SeriesInstanceUID, source.SOPInstanceUID))
    result = json.loads(s3.get_object(Bucket=up["bucket"], Key=prediction_key(DS, key))["Body"].read())

    # AND read back by WADO-RS, the SR states the result: finding, probability, model version
    status, body, content_type = pacs_get(
        orthanc["base"],
        f"/dicom-web/studies/{study}/series/{series}/instances/{instance}",
        accept='multipart/related; type="application/dicom"',
    )
    assert status == 200, body[:300]
    [part] = parse_stow_body(content_type, body)
    report = read_report(part.data)
    assert report.study_uid == study and report.sop_uid == instance
    assert report.finding == codes.finding_concept(result["label"])
    assert report.probability == pytest.approx(result["probabilities"][result["label"]], abs=1e-6)
    assert report.algorithm_version == "v1" == result["model_version"]
    assert source.SOPInstanceUID in report.evidence_uids

    # AND the SR passes dciodvfy without an error, where dicom3tools is installed
    if shutil.which("dciodvfy"):
        sr_file = tmp_path / "result.sr.dcm"
        sr_file.write_bytes(part.data)
        checked = subprocess.run(["dciodvfy", str(sr_file)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], "\n".join(errors)

    # AND the pipeline forwarded only the image (not its own SR back), and no push failed
    assert "pacs/failed/" not in json.dumps(s3.list_objects_v2(Bucket=up["bucket"], Prefix="pacs/"))
    quarantined = s3.list_objects_v2(Bucket=up["bucket"], Prefix="quarantine/").get("KeyCount", 0)
    assert quarantined == 0
    lambda_log = (up["workdir"] / "lambda.log").read_text()
    assert '"pacs_pushed"' in lambda_log
    assert not any(value in lambda_log for value in PHI_VALUES)
