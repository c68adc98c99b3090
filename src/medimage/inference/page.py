"""The page served at ``GET /``: a small worklist of images, each with its answer and its evidence.

Each picked file is posted as the raw request body (a binary media type) to ``predict?explain=true``, so
the page exercises exactly the API a program uses. Per image it shows the upload with the class-activation
heatmap laid over it (one toggle and one opacity slider for all), the probabilities as bars, the
confidence, and a banner when the answer needs a clinician's review; the model version and its training
date come from ``GET health``. Below it, the review worklist (`medimage.inference.review_page`). Behind
IAM auth a browser cannot sign requests: use `medimage serve` or `medimage up` locally, or deploy with the
API-key option and paste the key into the page.
"""

from medimage.inference.review_page import REVIEW_SECTION, REVIEW_STYLE

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>medimage - classify and review images</title>
<style>
 :root { --heat-opacity: 0.6; --ink: #1d232b; --muted: #5b6672; --line: #d5dbe1; --accent: #1f6feb;
         --review: #b42318; --review-bg: #fef3f2; --ok: #067647; }
 * { box-sizing: border-box; }
 body { font-family: system-ui, sans-serif; color: var(--ink); max-width: 72rem; margin: 1.5rem auto;
        padding: 0 1rem; }
 h1 { font-size: 1.4rem; margin: 0 0 .3rem; }
 .intro { color: var(--muted); margin: 0 0 1rem; }
 form { display: flex; flex-wrap: wrap; gap: .6rem 1.4rem; align-items: end; padding: .8rem 1rem;
        border: 1px solid var(--line); border-radius: .5rem; background: #f7f9fb; }
 form label { display: flex; flex-direction: column; gap: .2rem; font-size: .85rem; color: var(--muted); }
 form label.inline { flex-direction: row; align-items: center; gap: .4rem; color: var(--ink); }
 #model { margin: .8rem 0; font-size: .9rem; color: var(--muted); }
 #model strong { color: var(--ink); }
 #summary { font-weight: 600; margin: .4rem 0 .8rem; }
 #worklist { list-style: none; padding: 0; margin: 0; display: grid; gap: 1rem;
             grid-template-columns: repeat(auto-fill, minmax(20rem, 1fr)); }
 .card { border: 1px solid var(--line); border-radius: .5rem; padding: .8rem; background: #fff; }
 .card[data-review="true"] { border: 2px solid var(--review); }
 .card header { display: flex; justify-content: space-between; gap: .5rem; font-size: .85rem;
                color: var(--muted); overflow-wrap: anywhere; }
 .banner { margin: .5rem 0; padding: .5rem .7rem; border-radius: .35rem; background: var(--review);
           color: #fff; font-weight: 700; }
 .banner small { display: block; font-weight: 400; }
 .sure { margin: .5rem 0; padding: .3rem .7rem; border-radius: .35rem; background: #ecfdf3;
         color: var(--ok); font-weight: 600; }
 .stage { position: relative; margin: .5rem 0; background: #000; border-radius: .3rem; overflow: hidden;
          min-height: 4rem; }
 .stage img { display: block; width: 100%; height: auto; }
 .stage img.heat { position: absolute; inset: 0; width: 100%; height: 100%; opacity: var(--heat-opacity); }
 .stage img.heat.alone { position: static; height: auto; opacity: 1; }
 .stage .nopreview { color: #ccc; padding: 1rem; font-size: .85rem; }
 body.no-overlay .stage img.heat { display: none; }
 .label { font-size: 1.5rem; font-weight: 700; margin: .2rem 0 0; }
 .confidence { margin: 0 0 .5rem; color: var(--muted); }
 .bars { display: grid; grid-template-columns: auto 1fr 3.5rem; gap: .25rem .5rem; align-items: center;
         font-size: .85rem; }
 .track { height: .8rem; background: #eef1f4; border-radius: .4rem; overflow: hidden; }
 .fill { height: 100%; background: #9aa6b2; }
 .fill.top { background: var(--accent); }
 .pct { text-align: right; font-variant-numeric: tabular-nums; }
 .error { color: var(--review); }
/*review-style*/
</style>
</head>
<body>
<h1>Classify medical images</h1>
<p class="intro">Pick one or more chest X-rays (JPEG, PNG or DICOM). Each is sent to
<code>POST predict?explain=true</code>; nothing is stored. Answers the model is unsure of are marked
for review by a clinician.</p>
<form id="form">
 <label>Images <input id="image" name="image" type="file" multiple
   accept="image/jpeg,image/png,application/dicom,.dcm,.dicom"></label>
 <label>Dataset (empty: the default)
  <input id="dataset" name="dataset" type="text" placeholder="chestxray2017"></label>
 <label>API key (only if the API requires one)
  <input id="apikey" name="apikey" type="password" autocomplete="off"></label>
 <label class="inline"><input id="overlay" type="checkbox" checked> heatmap overlay</label>
 <label>Overlay opacity <input id="opacity" type="range" min="0" max="100" value="60"></label>
</form>
<p id="model" data-state="idle">Model: not loaded yet</p>
<p id="summary" role="status"></p>
<ol id="worklist"></ol>
<script>
const $ = (id) => document.getElementById(id);
const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
const REASONS = {
  low_confidence: "the model's confidence is below this deployment's review threshold",
  outside_training_distribution: "the image is unlike the images the model was trained on",
  foreign_image: "this does not look like the kind of image the model reads",
};
let health = null;

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function headers(file, isDicom) {
  const h = {"Content-Type": isDicom ? "application/dicom" : (file.type || "application/octet-stream")};
  if ($("apikey").value) h["x-api-key"] = $("apikey").value;
  return h;
}

async function loadHealth() {
  try {
    const response = await fetch(base + "health");
    if (!response.ok) return;
    health = await response.json();
    const dataset = $("dataset").value || health.default_dataset;
    const model = (health.datasets || {})[dataset] || {};
    if (!model.model_version) return;
    const line = $("model");
    line.textContent = "";
    line.append("Model ", el("strong", "version", model.model_version));
    if (model.trained_at) line.append(", trained ", el("strong", "trained", model.trained_at.slice(0, 10)));
    const percent = (value) => (100 * value).toFixed(0) + " %";
    if (model.review_thresholds) {
      const parts = Object.entries(model.review_thresholds)
        .map(([label, value]) => label + " " + percent(value));
      line.append(", review below ", el("strong", "threshold", parts.join(", ")));
    } else if (model.review_threshold !== null && model.review_threshold !== undefined) {
      line.append(", review below ", el("strong", "threshold", percent(model.review_threshold)));
    }
    line.append(" (" + dataset + ")");
    line.dataset.state = "loaded";
  } catch (e) { /* the model line is informative only */ }
}

function showAnswer(card, doc) {
  card.querySelector(".verdict").textContent = doc.label;
  if (doc.needs_review) {
    const banner = el("div", "banner", "NEEDS REVIEW - a clinician must confirm this label");
    banner.setAttribute("role", "alert");
    banner.append(el("small", "", REASONS[doc.review_reason] || doc.review_reason || ""));
    card.querySelector("header").after(banner);
  } else {
    card.querySelector("header").after(el("div", "sure", "Confident answer"));
  }
  card.querySelector(".label").textContent = doc.label;
  card.querySelector(".confidence").textContent =
    "confidence " + (100 * doc.confidence).toFixed(1) + " % - model " + doc.model_version;
  const bars = card.querySelector(".bars");
  const sorted = Object.entries(doc.probabilities).sort((a, b) => b[1] - a[1]);
  for (const [name, p] of sorted) {
    const track = el("span", "track");
    const fill = el("span", name === doc.label ? "fill top" : "fill");
    fill.style.width = (100 * p).toFixed(1) + "%";
    fill.style.display = "block";
    track.append(fill);
    bars.append(el("span", "name", name), track, el("span", "pct", (100 * p).toFixed(1) + " %"));
  }
  const stage = card.querySelector(".stage");
  if (doc.heatmap) {
    const heat = el("img", stage.querySelector("img.xray") ? "heat" : "heat alone");
    heat.alt = "class-activation heatmap of " + doc.label;
    heat.width = doc.heatmap.width;
    heat.height = doc.heatmap.height;
    heat.src = "data:image/png;base64," + doc.heatmap.png_base64;
    stage.append(heat);
  } else if (doc.heatmap_error) {
    card.querySelector(".answer").append(el("p", "note", "No heatmap: " + doc.heatmap_error.message));
  }
  card.dataset.review = String(Boolean(doc.needs_review));
  card.dataset.state = "done";
}

async function classifyOne(file, card) {
  const isDicom = /[.](dcm|dicom)$/i.test(file.name) || file.type === "application/dicom";
  const stage = card.querySelector(".stage");
  if (isDicom) {
    stage.append(el("div", "nopreview", "A browser cannot show DICOM: the heatmap is shown alone."));
  } else {
    const img = el("img", "xray");
    img.alt = file.name;
    img.src = URL.createObjectURL(file);
    stage.append(img);
  }
  const params = new URLSearchParams({explain: "true"});
  if ($("dataset").value) params.set("dataset", $("dataset").value);
  try {
    const request = {method: "POST", headers: headers(file, isDicom), body: file};
    const response = await fetch(base + "predict?" + params, request);
    const doc = await response.json();
    if (!response.ok) {
      const err = doc.error || {code: response.status, message: JSON.stringify(doc)};
      showError(card, err.code + ": " + err.message);
      return;
    }
    showAnswer(card, doc);
  } catch (e) {
    showError(card, String(e));
  }
}

function showError(card, text) {
  card.querySelector(".stage").remove();  // the file may not even be an image: no broken preview
  card.querySelector(".verdict").textContent = "not classified";
  card.querySelector(".error").textContent = text;
  card.dataset.state = "error";
}

function newCard(file) {
  const card = el("li", "card");
  card.dataset.state = "busy";
  card.dataset.review = "";
  const header = el("header");
  header.append(el("span", "name", file.name), el("span", "verdict", "..."));
  const answer = el("div", "answer");
  answer.append(el("p", "label"), el("p", "confidence"), el("div", "bars"));
  card.append(header, el("div", "stage"), answer, el("p", "error"));
  return card;
}

function summarise() {
  const cards = [...document.querySelectorAll("#worklist .card")];
  const done = cards.filter((c) => c.dataset.state === "done");
  const review = done.filter((c) => c.dataset.review === "true").length;
  const failed = cards.filter((c) => c.dataset.state === "error").length;
  const busy = cards.length - done.length - failed;
  $("summary").textContent = cards.length + " image(s): " + (done.length - review) + " labelled, " +
    review + " need review" + (failed ? ", " + failed + " failed" : "") +
    (busy ? ", " + busy + " waiting" : "");
  $("summary").dataset.state = busy ? "busy" : "done";
}

async function classifyAll() {
  const files = [...$("image").files];
  if (!files.length) return;
  $("worklist").innerHTML = "";
  const cards = files.map((file) => { const c = newCard(file); $("worklist").append(c); return c; });
  summarise();
  for (let i = 0; i < files.length; i++) {  // one at a time: the service answers one request at a time
    await classifyOne(files[i], cards[i]);
    summarise();
    if (!health || $("model").dataset.state !== "loaded") await loadHealth();
  }
}

$("image").addEventListener("change", classifyAll);
$("overlay").addEventListener("change", () =>
  document.body.classList.toggle("no-overlay", !$("overlay").checked));
$("opacity").addEventListener("input", () =>
  document.documentElement.style.setProperty("--heat-opacity", String($("opacity").value / 100)));
loadHealth();
</script>
<!--review-section-->
</body>
</html>
"""

INDEX_HTML = _PAGE.replace("/*review-style*/", REVIEW_STYLE).replace("<!--review-section-->", REVIEW_SECTION)
