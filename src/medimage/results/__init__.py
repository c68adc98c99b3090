"""Results a PACS and a record system read: a DICOM Structured Report and a FHIR R4 DiagnosticReport for
each prediction, and a second SR for a clinician's verdict. Pure rules here (no AWS library); the data
bucket is reached through the `medimage.services.ports.ObjectStore` port."""
