// Marks the explanation's terms (templates/_explain.html) in the item's extracted text.
// Text only: matches are wrapped in <mark> elements built from text nodes, never as markup.
(function () {
  "use strict";
  var text = document.getElementById("document-text");
  var sources = document.querySelectorAll(".explain [data-explain-term]");
  if (!text || !sources.length) return;
  var WORD = "[\\p{L}\\p{N}_]";
  var escape = function (s) { return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); };
  // A term is the model's lower-cased words (one or two); between them any non-word run,
  // as the model's tokenizer skips punctuation and spacing.
  var terms = [];
  sources.forEach(function (el) {
    var words = el.getAttribute("data-explain-term").split(" ").map(escape);
    terms.push({
      pattern: words.join("[^\\p{L}\\p{N}_]+"),
      length: words.join(" ").length,
      against: el.classList.contains("explain-against"),
      toward: el.getAttribute("data-explain-toward")
    });
  });
  terms.sort(function (a, b) { return b.length - a.length; }); // bigrams before their words
  var matcher = new RegExp(
    "(?<!" + WORD + ")(?:" + terms.map(function (t) { return "(" + t.pattern + ")"; }).join("|") +
    ")(?!" + WORD + ")", "giu");
  var walker = document.createTreeWalker(text, NodeFilter.SHOW_TEXT);
  var nodes = [];
  while (walker.nextNode()) nodes.push(walker.currentNode);
  nodes.forEach(function (node) {
    var value = node.nodeValue, last = 0, match, parts = [];
    matcher.lastIndex = 0;
    while ((match = matcher.exec(value)) !== null) {
      var which = terms[match.slice(1).findIndex(function (g) { return g !== undefined; })];
      parts.push(document.createTextNode(value.slice(last, match.index)));
      var mark = document.createElement("mark");
      mark.className = which.against ? "explain-against" : "explain-toward";
      mark.title = "pushed toward " + which.toward;
      mark.textContent = match[0];
      parts.push(mark);
      last = match.index + match[0].length;
    }
    if (!parts.length) return;
    parts.push(document.createTextNode(value.slice(last)));
    var fragment = document.createDocumentFragment();
    parts.forEach(function (p) { fragment.appendChild(p); });
    node.parentNode.replaceChild(fragment, node);
  });
})();
