"""The review worklist of the page at ``GET /`` (`medimage.inference.page` puts it below the upload form).

It lists ``GET review?dataset=`` (the images drop-to-label was unsure of, least confident first), then
fetches each item (``GET review/item``) one at a time: the image with the production model's heatmap laid
over it (the page's overlay toggle and opacity slider apply), the probabilities as bars, the confidence and
why it needs review. One click confirms the AI's label, or a class picked from the dataset's classes is
given instead (``POST review/label``): the image moves into the training data and the verdict is recorded
with the caller's identity, which the API's auth supplies (the page's API key field in API-key mode).
"""

REVIEW_STYLE = """
 #review { margin-top: 2rem; border-top: 1px solid var(--line); padding-top: 1rem; }
 #review h2 { font-size: 1.2rem; margin: 0 0 .3rem; }
 #review-list { list-style: none; padding: 0; margin: 0; display: grid; gap: 1rem;
                grid-template-columns: repeat(auto-fill, minmax(20rem, 1fr)); }
 .reason { margin: .4rem 0; padding: .3rem .6rem; border-radius: .35rem; background: var(--review-bg);
           color: var(--review); font-size: .85rem; }
 .actions { display: flex; flex-wrap: wrap; gap: .4rem; align-items: center; margin-top: .6rem; }
 .actions button { padding: .35rem .7rem; border-radius: .35rem; border: 1px solid var(--line);
                   background: #fff; cursor: pointer; }
 .actions button.confirm { background: var(--ok); border-color: var(--ok); color: #fff; font-weight: 600; }
 .actions button:disabled { opacity: .5; cursor: default; }
 .outcome { margin: .5rem 0 0; padding: .3rem .6rem; border-radius: .35rem; background: #ecfdf3;
            color: var(--ok); font-size: .85rem; overflow-wrap: anywhere; }
 .outcome:empty { display: none; }
 .rcard[data-state="labelled"] { opacity: .75; }
"""

REVIEW_SECTION = """
<section id="review" aria-labelledby="review-title">
<h2 id="review-title">Review worklist</h2>
<p class="intro">The images drop-to-label was unsure of, least confident first. Confirm the AI's label or
give the right one: the image becomes training data under that label, and the verdict is recorded under
the identity the API's auth gives you (your API key or IAM principal).</p>
<button id="review-load" type="button">Load the review queue</button>
<p id="review-summary" role="status" data-state="idle"></p>
<ol id="review-list"></ol>
</section>
<script>
(() => {
  const queue = {dataset: null, classes: [], left: 0};

  function authHeaders(json) {
    const h = json ? {"Content-Type": "application/json"} : {};
    if ($("apikey").value) h["x-api-key"] = $("apikey").value;
    return h;
  }

  async function call(path, options) {
    const response = await fetch(base + path, options);
    let doc = null;
    try { doc = await response.json(); } catch (e) { doc = {}; }
    if (!response.ok) {
      const err = doc.error || {code: response.status, message: doc.message || "no answer"};
      throw new Error(err.code + ": " + err.message);
    }
    return doc;
  }

  function say(text, state) {
    $("review-summary").textContent = text;
    $("review-summary").dataset.state = state;
  }

  function countLeft() {
    const cards = [...document.querySelectorAll("#review-list .rcard")];
    queue.left = cards.filter((c) => c.dataset.state !== "labelled").length;
    say(queue.left + " of " + cards.length + " image(s) wait for review in " + queue.dataset +
        " (least confident first)", "done");
  }

  function drawBars(bars, probabilities, top) {
    const sorted = Object.entries(probabilities || {}).sort((a, b) => b[1] - a[1]);
    for (const [name, p] of sorted) {
      const track = el("span", "track");
      const fill = el("span", name === top ? "fill top" : "fill");
      fill.style.width = (100 * p).toFixed(1) + "%";
      fill.style.display = "block";
      track.append(fill);
      bars.append(el("span", "name", name), track, el("span", "pct", (100 * p).toFixed(1) + " %"));
    }
  }

  function reviewCard(item) {
    const card = el("li", "card rcard");
    card.dataset.name = item.name;
    card.dataset.state = "loading";
    const header = el("header");
    header.append(el("span", "name", item.name), el("span", "verdict", "AI: " + (item.label || "-")));
    const reason = el("p", "reason", REASONS[item.review_reason] || item.review_reason || "needs review");
    const answer = el("div", "answer");
    const confidence = item.confidence === null ? "-" : (100 * item.confidence).toFixed(1) + " %";
    answer.append(el("p", "label", item.label || "-"),
                  el("p", "confidence", "confidence " + confidence + " - model " + item.model_version),
                  el("div", "bars"));
    drawBars(answer.querySelector(".bars"), item.probabilities, item.label);
    const actions = el("div", "actions");
    const confirm = el("button", "confirm", "Confirm " + (item.label || ""));
    confirm.type = "button";
    confirm.disabled = !item.label;
    confirm.addEventListener("click", () => give(card, item.label));
    const choice = el("select", "relabel");
    choice.setAttribute("aria-label", "the right label");
    for (const name of queue.classes.filter((c) => c !== item.label)) {
      const option = el("option", "", name);
      option.value = name;
      choice.append(option);
    }
    const other = el("button", "give", "Give this label");
    other.type = "button";
    other.addEventListener("click", () => give(card, choice.value));
    actions.append(confirm, choice, other);
    card.append(header, reason, el("div", "stage"), answer, actions, el("p", "outcome"), el("p", "error"));
    return card;
  }

  async function showItem(card) {
    const params = new URLSearchParams({dataset: queue.dataset, name: card.dataset.name});
    const stage = card.querySelector(".stage");
    try {
      const doc = await call("review/item?" + params, {headers: authHeaders(false)});
      if (doc.image) {
        const img = el("img", "xray");
        img.alt = doc.name;
        img.src = doc.image;
        stage.append(img);
      } else {
        stage.append(el("div", "nopreview", doc.image_note || "no preview"));
      }
      if (doc.heatmap) {
        const heat = el("img", doc.image ? "heat" : "heat alone");
        heat.alt = "class-activation heatmap (model " + doc.heatmap_model_version + ")";
        heat.width = doc.heatmap.width;
        heat.height = doc.heatmap.height;
        heat.src = "data:image/png;base64," + doc.heatmap.png_base64;
        stage.append(heat);
      } else if (doc.heatmap_error) {
        card.querySelector(".answer").append(el("p", "note", "No heatmap: " + doc.heatmap_error.message));
      }
      card.dataset.state = "ready";
    } catch (e) {
      card.querySelector(".error").textContent = e.message;
      card.dataset.state = "error";
    }
  }

  async function give(card, label) {
    const buttons = [...card.querySelectorAll(".actions button")];
    buttons.forEach((b) => { b.disabled = true; });
    card.querySelector(".error").textContent = "";
    const body = JSON.stringify({dataset: queue.dataset, name: card.dataset.name, label: label});
    try {
      const done = await call("review/label", {method: "POST", headers: authHeaders(true), body: body});
      card.querySelector(".outcome").textContent = "Labelled " + done.label + " (" + done.verdict +
        ") by " + done.reviewer + ": now " + done.labeled_key;
      card.querySelector(".actions").remove();
      card.dataset.verdict = done.verdict;
      card.dataset.state = "labelled";
    } catch (e) {
      card.querySelector(".error").textContent = e.message;
      buttons.forEach((b) => { b.disabled = false; });
    }
    countLeft();
  }

  async function loadQueue() {
    $("review-list").innerHTML = "";
    say("loading the review queue...", "busy");
    const params = new URLSearchParams();
    if ($("dataset").value) params.set("dataset", $("dataset").value);
    let doc;
    try {
      doc = await call("review?" + params, {headers: authHeaders(false)});
    } catch (e) {
      say(e.message, "error");
      return;
    }
    queue.dataset = doc.dataset;
    queue.classes = doc.classes;
    const cards = doc.items.map(reviewCard);
    $("review-list").append(...cards);
    if (!cards.length) { say("nothing waits for review in " + doc.dataset, "done"); return; }
    say("loading " + cards.length + " image(s)...", "busy");
    for (const card of cards) await showItem(card);  // one at a time, as the service answers
    countLeft();
  }

  $("review-load").addEventListener("click", loadQueue);
})();
</script>
"""
