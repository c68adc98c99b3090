"""Orthanc plugin: forward each stable study to the medimage pipeline by DICOMweb STOW-RS.

Orthanc runs this script in its Python plugin (``"PythonScript"`` in orthanc.json). When a study has
received no instance for ``StableAge`` seconds, the images of the study that were not forwarded yet are
sent to ``Medimage.StowUrl`` in one ``multipart/related; type="application/dicom"`` request; the pipeline
labels them and sends its DICOM SR back into the same study (PacsStowUrl, this Orthanc's DICOMweb root).

Objects that are not images to classify are never sent: series of modality SR, KO, PR, SEG or DOC, and
anything medimage wrote (Manufacturer "medimage"). So the pipeline's own SR, arriving in the study and
making it stable again, is not sent back to the pipeline. Each forwarded instance gets the user metadata
``MedimageForwarded`` (the STOW-RS status), so a study that changes again sends only its new images.

Settings (orthanc.json ``Medimage``, or the environment, which wins):
  StowUrl      MEDIMAGE_STOW_URL      e.g. https://<api>/v1/datasets/chestxray2017/studies
  ApiKey       MEDIMAGE_API_KEY       the inference API's key (InferenceApiAuth API_KEY), sent as x-api-key
  TimeoutSeconds                      per request (default 60)
  MaxInstances                        instances per request (default 10; the API takes 10 MB a request)

Only the standard library and Orthanc's own ``orthanc`` module: nothing to install in Orthanc's Python.
A failed request is logged and left unmarked, so the study is sent again when it next becomes stable.
"""

import json
import os
import urllib.error
import urllib.request
import uuid

import orthanc

FORWARDED = "MedimageForwarded"  # declared in orthanc.json "UserMetadata"
NOT_CLASSIFIED = {"SR", "KO", "PR", "SEG", "DOC"}
OWN_MANUFACTURER = "medimage"


def _settings():
    config = json.loads(orthanc.GetConfiguration()).get("Medimage", {})
    return {
        "url": os.environ.get("MEDIMAGE_STOW_URL") or config.get("StowUrl", ""),
        "api_key": os.environ.get("MEDIMAGE_API_KEY") or config.get("ApiKey", ""),
        "timeout": float(config.get("TimeoutSeconds", 60)),
        "batch": int(config.get("MaxInstances", 10)),
    }


def _get_json(uri):
    return json.loads(orthanc.RestApiGet(uri))


def _forwarded(instance_id):
    try:
        orthanc.RestApiGet(f"/instances/{instance_id}/metadata/{FORWARDED}")
    except Exception:  # Orthanc answers 404 (an OrthancException) for metadata never set
        return False
    return True


def images_to_send(study_id):
    """The instance ids of the study's images that were never forwarded."""
    ids = []
    for series in _get_json(f"/studies/{study_id}/series"):
        tags = series.get("MainDicomTags", {})
        if tags.get("Modality", "").upper() in NOT_CLASSIFIED:
            continue
        if tags.get("Manufacturer", "").strip().lower() == OWN_MANUFACTURER:
            continue
        ids += [i for i in series.get("Instances", []) if not _forwarded(i)]
    return ids


def multipart_related(instances):
    boundary = f"orthanc-{uuid.uuid4().hex}"
    chunks = []
    for data in instances:
        chunks += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii"), data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode("ascii"))
    return f'multipart/related; type="application/dicom"; boundary={boundary}', b"".join(chunks)


def stow(settings, instance_ids):
    """POST the instances; the HTTP status, or None when the pipeline did not answer."""
    content_type, body = multipart_related([orthanc.RestApiGet(f"/instances/{i}/file") for i in instance_ids])
    headers = {"Content-Type": content_type, "Accept": "application/dicom+json"}
    if settings["api_key"]:
        headers["x-api-key"] = settings["api_key"]
    request = urllib.request.Request(settings["url"], data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=settings["timeout"]) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError) as exc:
        orthanc.LogWarning(f"medimage: STOW-RS to the pipeline got no answer ({type(exc).__name__})")
        return None


def forward_study(study_id):
    settings = _settings()
    if not settings["url"]:
        orthanc.LogWarning("medimage: no Medimage.StowUrl configured; nothing forwarded")
        return
    ids = images_to_send(study_id)
    for start in range(0, len(ids), settings["batch"]):
        batch = ids[start : start + settings["batch"]]
        status = stow(settings, batch)
        # 200: all stored; 202/409: the pipeline quarantined some or all (sending again changes nothing).
        if status in (200, 202, 409):
            for instance_id in batch:
                orthanc.RestApiPut(f"/instances/{instance_id}/metadata/{FORWARDED}", f"stow {status}")
            orthanc.LogWarning(f"medimage: study {study_id}: {len(batch)} instance(s) sent, HTTP {status}")
        else:
            message = f"STOW-RS failed (HTTP {status}); sent again when the study is next stable"
            orthanc.LogWarning(f"medimage: study {study_id}: {message}")


def on_change(change_type, level, resource_id):
    if change_type == orthanc.ChangeType.STABLE_STUDY:
        try:
            forward_study(resource_id)
        except Exception as exc:  # never let a failure stop Orthanc's change processing
            orthanc.LogError(f"medimage: forwarding study {resource_id} failed: {type(exc).__name__}: {exc}")


orthanc.RegisterOnChangeCallback(on_change)
