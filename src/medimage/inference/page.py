"""The small page served at ``GET /``: pick an image, see the prediction.

It posts the file as the raw request body (a binary media type), so it exercises exactly the API a
program uses. Behind IAM auth a browser cannot sign requests: use `medimage serve` locally, or deploy
with the API-key option and paste the key into the page.
"""

INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>medimage - classify an image</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
 label { display: block; margin: .6rem 0 .2rem; }
 img { max-width: 100%; max-height: 18rem; margin-top: 1rem; }
 #label { font-size: 1.6rem; font-weight: bold; }
 #error { color: #a00; }
 td { padding: .1rem .8rem .1rem 0; }
</style>
</head>
<body>
<h1>Classify a medical image</h1>
<p>Pick a chest X-ray (JPEG, PNG or DICOM). The image is sent to <code>POST predict</code>;
nothing is stored.</p>
<form id="form">
 <label for="image">Image</label>
 <input id="image" name="image" type="file" accept="image/jpeg,image/png,application/dicom,.dcm,.dicom">
 <label for="dataset">Dataset (empty: the default)</label>
 <input id="dataset" name="dataset" type="text" placeholder="chestxray2017">
 <label for="apikey">API key (only if the API requires one)</label>
 <input id="apikey" name="apikey" type="password" autocomplete="off">
</form>
<p>Prediction: <output id="label" data-state="idle">-</output></p>
<p id="error" role="alert"></p>
<table id="probabilities"></table>
<p id="meta"></p>
<img id="preview" alt="">
<script>
const $ = (id) => document.getElementById(id);
const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
async function classify() {
  const file = $("image").files[0];
  if (!file) return;
  // A browser cannot show DICOM: the preview is for JPEG and PNG only.
  const isDicom = /[.](dcm|dicom)$/i.test(file.name) || file.type === "application/dicom";
  $("preview").src = isDicom ? "" : URL.createObjectURL(file);
  $("label").textContent = "...";
  $("label").dataset.state = "busy";
  $("error").textContent = "";
  $("probabilities").innerHTML = "";
  $("meta").textContent = "";
  const headers = {"Content-Type": isDicom ? "application/dicom" : (file.type || "application/octet-stream")};
  if ($("apikey").value) headers["x-api-key"] = $("apikey").value;
  const query = $("dataset").value ? "?dataset=" + encodeURIComponent($("dataset").value) : "";
  try {
    const response = await fetch(base + "predict" + query, {method: "POST", headers, body: file});
    const doc = await response.json();
    if (!response.ok) {
      const err = doc.error || {code: response.status, message: JSON.stringify(doc)};
      $("label").textContent = "-";
      $("label").dataset.state = "error";
      $("error").textContent = err.code + ": " + err.message;
      return;
    }
    $("label").textContent = doc.label;
    $("label").dataset.state = "done";
    for (const [name, p] of Object.entries(doc.probabilities)) {
      const row = $("probabilities").insertRow();
      row.insertCell().textContent = name;
      row.insertCell().textContent = (100 * p).toFixed(1) + " %";
    }
    $("meta").textContent = "model " + doc.model_version + ", " + doc.latency_ms + " ms";
  } catch (e) {
    $("label").textContent = "-";
    $("label").dataset.state = "error";
    $("error").textContent = String(e);
  }
}
$("image").addEventListener("change", classify);
</script>
</body>
</html>
"""
