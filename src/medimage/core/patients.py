"""Patient ids from DICOM headers, pseudonymised: the catalog and the manifests never hold the real one.

The split groups a patient's images by id so that one patient never straddles train and test. A DICOM
``PatientID`` is PHI, so it is replaced by a keyed hash (HMAC-SHA256 with the deployment's secret salt):
stable within a deployment (the same patient always gets the same pseudonym, so splits stay put), not
reversible by anyone without the salt, and not comparable across deployments with different salts.
"""

from __future__ import annotations

import hashlib
import hmac

PSEUDONYM_PREFIX = "dcm-"


def pseudonymous_patient_id(patient_id: str, salt: str) -> str | None:
    """``dcm-`` + 24 hex digits of HMAC-SHA256(salt, PatientID); None when either is empty (no id, or no
    salt to hash with: then the raw id is not used at all)."""
    value = patient_id.strip()
    if not value or not salt:
        return None
    digest = hmac.new(salt.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:24]
