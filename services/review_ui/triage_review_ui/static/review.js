// Keyboard shortcuts, claims and the shortcuts overlay for the review UI. Written for
// Triage; no libraries. The shortcuts are listed in templates/_shortcuts.html: keep both true.
(function () {
  "use strict";
  var CONTROLS = "a[href], button, input, textarea, select, summary, iframe, [contenteditable]";

  // Keys act only when the focus is not on a control; the decision's choices are the one
  // exception, so 1-9 then Enter decides. Enter on a link or button does that control's action.
  function onControl(target) {
    var control = target && target.closest ? target.closest(CONTROLS) : null;
    if (!control) { return false; }
    return !(control.tagName === "INPUT" && control.type === "radio" && control.name === "label");
  }

  function csrfToken() {
    var field = document.querySelector('input[name="csrf"]');
    return field ? field.value : "";
  }

  function post(url) {
    return fetch(url, {
      method: "POST",
      headers: { "Accept": "application/json" },
      body: new URLSearchParams({ csrf: csrfToken() }),
      credentials: "same-origin"
    });
  }

  // The claim: none on opening; the first decision keystroke (or c, or the Claim button)
  // claims, and an open, visible page renews it every data-heartbeat-ms.
  var claim = {
    box: null,
    timer: null,
    say: function (text, alarm) {
      var line = document.getElementById("claim-line");
      if (!line) { return; }
      line.textContent = text;
      line.className = alarm ? "error" : "claim";
      line.setAttribute("role", alarm ? "alert" : "status");
    },
    answer: function (response) {
      if (response.status === 401) {
        claim.say("Your session has ended: deciding will ask you to sign in again; your choice is kept.", true);
        return null;
      }
      return response.json().then(function (body) {
        claim.buttons(body.held);
        if (body.held) {
          claim.box.dataset.state = "mine";
          claim.say("Claimed by you until " + body.until_text + ".", false);
          claim.beat();
        } else {
          claim.box.dataset.state = body.holder ? "other" : (body.state || "free");
          claim.say(body.holder
            ? body.holder + " holds this item now: your decision would not be saved."
            : "You no longer hold this item.", true);
        }
        return body;
      });
    },
    buttons: function (held) {
      var take = document.getElementById("claim-form");
      var give = document.getElementById("release-form");
      if (take) { take.hidden = held; }
      if (give) { give.hidden = !held; }
    },
    take: function () {
      if (!claim.box || claim.box.dataset.state !== "free") { return; }
      claim.box.dataset.state = "claiming";
      post("/items/" + claim.box.dataset.item + "/claim").then(claim.answer);
    },
    renew: function () {
      if (!claim.box || claim.box.dataset.state !== "mine" || document.visibilityState !== "visible") {
        return;
      }
      post("/items/" + claim.box.dataset.item + "/renew").then(claim.answer);
    },
    beat: function () {
      if (claim.timer === null) {
        claim.timer = window.setInterval(claim.renew, Number(claim.box.dataset.heartbeatMs) || 60000);
      }
    },
    start: function () {
      claim.box = document.getElementById("claim-state");
      if (!claim.box) { return; }
      if (claim.box.dataset.state === "mine") { claim.beat(); }
      document.addEventListener("visibilitychange", claim.renew);
      var form = document.getElementById("decide");
      if (form) {
        form.addEventListener("change", claim.take);
        form.addEventListener("input", claim.take);
      }
    }
  };

  // A decision the session's end interrupted: the tab keeps the choice and note (never the
  // CSRF token) and restores them when sign-in brings the reviewer back (?restore=1).
  var draft = {
    key: function () { return "triage-draft:" + window.location.pathname; },
    keep: function (form) {
      var chosen = form.querySelector('input[name="label"]:checked');
      window.sessionStorage.setItem(draft.key(), JSON.stringify({
        label: chosen ? chosen.value : null,
        note: form.elements.note.value
      }));
    },
    restore: function (form) {
      var params = new URLSearchParams(window.location.search);
      if (!params.has("restore")) { return; }
      params.delete("restore");
      var rest = params.toString();
      window.history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
      var kept = window.sessionStorage.getItem(draft.key());
      window.sessionStorage.removeItem(draft.key());
      if (!kept || !form) { return; }  // decided or taken meanwhile: the page says so
      var saved = JSON.parse(kept);
      form.querySelectorAll('input[name="label"]').forEach(function (radio) {
        radio.checked = radio.value === saved.label;
      });
      form.elements.note.value = saved.note || "";
      var notice = document.getElementById("draft-notice");
      if (notice) { notice.hidden = false; }
      claim.take();
    }
  };

  // The "?" overlay: a modal dialog; Tab and Shift+Tab stay inside, Escape closes it and
  // gives the focus back to where it was.
  var overlay = {
    dialog: null,
    opener: null,
    open: function () {
      if (!overlay.dialog || overlay.dialog.open) { return; }
      overlay.opener = document.activeElement;
      overlay.dialog.showModal();
      document.getElementById("shortcuts-close").focus();
    },
    trap: function (event) {
      if (event.key !== "Tab") { return; }
      var inside = overlay.dialog.querySelectorAll(CONTROLS);
      var first = inside[0];
      var last = inside[inside.length - 1];
      if (event.shiftKey && document.activeElement === first) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && document.activeElement === last) {
        event.preventDefault();
        first.focus();
      }
    },
    start: function () {
      overlay.dialog = document.getElementById("shortcuts");
      if (!overlay.dialog) { return; }
      overlay.dialog.addEventListener("keydown", overlay.trap);
      overlay.dialog.addEventListener("close", function () {
        if (overlay.opener && overlay.opener.focus) { overlay.opener.focus(); }
      });
      document.querySelectorAll("[data-shortcuts]").forEach(function (button) {
        button.addEventListener("click", overlay.open);
      });
    }
  };

  document.addEventListener("DOMContentLoaded", function () {
    var all = document.getElementById("select-all");
    if (all) {
      all.addEventListener("change", function () {
        document.querySelectorAll('input[name="item_id"]').forEach(function (box) {
          box.checked = all.checked;
        });
      });
    }
    claim.start();
    overlay.start();
    var form = document.getElementById("decide");
    if (form) {
      form.addEventListener("submit", function () { draft.keep(form); });
    }
    draft.restore(form);
  });

  function click(id) {
    var control = document.getElementById(id);
    if (control) { control.click(); }
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (overlay.dialog && overlay.dialog.open) { return; }  // the dialog has the keys
    if (onControl(event.target)) { return; }
    if (event.key === "?") {
      event.preventDefault();
      overlay.open();
      return;
    }
    var item = document.querySelector(".item");
    if (!item) { return; }
    var form = document.getElementById("decide");
    if (event.key === "j" && item.dataset.next) {
      window.location.href = "/items/" + item.dataset.next;
    } else if (event.key === "k" && item.dataset.previous) {
      window.location.href = "/items/" + item.dataset.previous;
    } else if (event.key === "c" && claim.box && claim.box.dataset.state === "free") {
      click("claim-button");
    } else if (event.key === "s") {
      click("skip-button");
    } else if (form && /^[1-9]$/.test(event.key)) {
      var choice = form.querySelectorAll('input[name="label"]')[Number(event.key) - 1];
      if (choice) {
        choice.checked = true;
        choice.focus();
        claim.take();
      }
    } else if (form && event.key === "Enter") {
      event.preventDefault();
      form.requestSubmit();
    }
  });
})();
