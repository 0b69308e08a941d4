// Keyboard shortcuts for the review UI. Written for Triage; no libraries.
(function () {
  "use strict";
  function typing(event) {
    var tag = (event.target && event.target.tagName) || "";
    return tag === "TEXTAREA" || tag === "INPUT" && event.target.type !== "radio" || tag === "SELECT";
  }
  document.addEventListener("DOMContentLoaded", function () {
    var all = document.getElementById("select-all");
    if (all) {
      all.addEventListener("change", function () {
        document.querySelectorAll('input[name="item_id"]').forEach(function (box) {
          box.checked = all.checked;
        });
      });
    }
  });
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event)) { return; }
    var item = document.querySelector(".item");
    if (!item) { return; }
    var form = document.getElementById("decide");
    if (event.key === "j" && item.dataset.next) {
      window.location.href = "/items/" + item.dataset.next;
    } else if (event.key === "k" && item.dataset.previous) {
      window.location.href = "/items/" + item.dataset.previous;
    } else if (form && /^[1-9]$/.test(event.key)) {
      var choices = form.querySelectorAll('input[name="label"]');
      var choice = choices[Number(event.key) - 1];
      if (choice) { choice.checked = true; choice.focus(); }
    } else if (form && event.key === "Enter") {
      event.preventDefault();
      form.requestSubmit();
    }
  });
})();
