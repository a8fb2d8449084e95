// Live updates (an enhancement: without this script the page is complete, a reload shows
// what is new). An element with data-live="/live/threads/ID" (or /live/groups/NAME) gets
// each new post the server lets this viewer see: the post's fragment is fetched and added
// as a loaded post is drawn. A reply whose fragment names the post it answers
// (data-parent) and whose parent is on the page goes under it, in the parent's replies
// (made if it had none), and the reply counts above it go up; anything else goes to the
// element marked data-live-target inside the live element (or to the element itself), at
// the start when data-live-insert="start", else at the end. A polite status line
// announces each.
"use strict";

(function () {
  function statusLine() {
    var line = document.createElement("p");
    line.className = "live-status";
    line.setAttribute("role", "status");
    line.setAttribute("aria-live", "polite");
    document.body.appendChild(line);
    return line;
  }

  function countText(n) {
    return n + (n === 1 ? " reply" : " replies");
  }

  // The replies directly under an article (its <details class="replies">), made if missing.
  function repliesOf(parent) {
    for (var i = 0; i < parent.children.length; i++) {
      var child = parent.children[i];
      if (child.tagName === "DETAILS" && child.classList.contains("replies")) { return child; }
    }
    var details = document.createElement("details");
    details.className = "replies";
    details.open = true;
    var summary = document.createElement("summary");
    summary.textContent = countText(0);
    details.appendChild(summary);
    parent.appendChild(details);
    return details;
  }

  // Every article above `article` counts it among its replies, at any depth.
  function countUp(article) {
    var above = article.parentElement && article.parentElement.closest("article.reply");
    while (above) {
      var details = repliesOf(above);
      var summary = details.querySelector(":scope > summary");
      var shown = parseInt(summary.textContent, 10);
      summary.textContent = countText((isNaN(shown) ? 0 : shown) + 1);
      above = above.parentElement && above.parentElement.closest("article.reply");
    }
  }

  // Under the post it answers, when that post is on the page and still shown.
  function nest(article) {
    var parentId = article.getAttribute("data-parent");
    var parent = parentId ? document.getElementById(parentId) : null;
    if (!parent || !parent.matches("article.reply") || parent.classList.contains("gone")) {
      return false;
    }
    repliesOf(parent).appendChild(article);
    countUp(article);
    return true;
  }

  function follow(root, status) {
    var target = root.querySelector("[data-live-target]") || root;
    var atStart = root.getAttribute("data-live-insert") === "start";
    var source = new EventSource(root.getAttribute("data-live"));
    source.addEventListener("post", function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      if (typeof event.id !== "number" || document.getElementById("p" + event.id)) { return; }
      fetch(event.url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) { return response.ok ? response.text() : ""; })
        .then(function (html) {
          if (!html || document.getElementById("p" + event.id)) { return; }
          var parsed = document.createElement("template");
          parsed.innerHTML = html;
          var article = parsed.content.querySelector("article");
          if (!article) { return; }
          article.classList.add("live-new");
          if (!nest(article)) {
            if (atStart) { target.insertBefore(article, target.firstChild); } else { target.appendChild(article); }
          }
          var who = article.querySelector(".meta a");
          status.textContent = "New post" + (who ? " by " + who.textContent : "") + ".";
        })
        .catch(function () {});
    });
  }

  var roots = document.querySelectorAll("[data-live]");
  if (!roots.length || !window.EventSource || !window.fetch) { return; }
  var status = statusLine();
  for (var i = 0; i < roots.length; i++) { follow(roots[i], status); }
})();
