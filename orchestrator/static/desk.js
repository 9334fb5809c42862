// Keeps the claim's lease alive while this page is open, and says so when the customer
// writes again or the claim is lost. Everything it shows is set as text, never as HTML.
(function () {
  "use strict";
  var composer = document.getElementById("composer");
  if (!composer) return;
  var id = composer.dataset.escalation;
  var token = composer.dataset.token;
  var seen = composer.dataset.seen;
  var csrf = composer.dataset.csrf;
  var lease = Number(composer.dataset.lease) || 120;
  var banner = document.getElementById("banner");
  var lost = false;

  function say(text, kind) {
    banner.textContent = text;
    banner.className = "banner " + kind;
    banner.hidden = false;
  }

  function claimLost(detail) {
    if (lost) return;
    lost = true;
    say("Your claim was lost: " + detail + " Reload the page to see where it stands.", "lost");
    composer.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
  }

  function heartbeat() {
    if (lost) return;
    var body = new URLSearchParams({ claim_token: token, csrf: csrf });
    fetch("/desk/escalations/" + encodeURIComponent(id) + "/heartbeat", {
      method: "POST",
      headers: { "X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded" },
      body: body.toString(),
      credentials: "same-origin",
    }).then(function (r) {
      if (r.status === 409) return r.json().then(function (j) { claimLost(j.detail || ""); });
    }).catch(function () { /* the network blinked: the next beat tries again */ });
  }

  function poll() {
    fetch("/desk/escalations/" + encodeURIComponent(id) + "/status", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) return;
        if (!s.mine || String(s.claim_token) !== String(token)) {
          claimLost("it is " + s.state + " now.");
        } else if (s.latest_customer_message_id && s.latest_customer_message_id !== seen) {
          say("The customer wrote again: \u201c" + s.latest_customer_message +
              "\u201d. Reload the page before you reply.", "newer");
        }
      }).catch(function () {});
  }

  setInterval(heartbeat, Math.max(5, lease / 3) * 1000);
  setInterval(poll, 3000);
})();
